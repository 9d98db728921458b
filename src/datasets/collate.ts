/**
 * Collation: turns pipeline samples into the batch that detectors take. This is the only
 * step of data loading that creates a tensor; the caller owns `images` and must dispose it.
 */
import * as tf from '@tensorflow/tfjs-core';

import type { GroundTruth, ImageMeta } from '../models/types.ts';
import { DataError } from '../utils/errors.ts';
import type { Sample } from './sample.ts';

export interface Batch {
  /** `[N, H, W, 3]` float32, each image at the top left, zero-padded to the largest height and width in the batch. */
  images: tf.Tensor4D;
  metas: ImageMeta[];
  /** Ground truth per image; arrays are empty for samples without loaded annotations. */
  targets: GroundTruth[];
}

export interface CollateOptions {
  /** Round the batch height and width up to multiples of this (default 1: the batch maximum as is). */
  sizeDivisor?: number;
}

/** Stacks samples into one padded image tensor plus per-image metadata and ground truth. */
export function collate(samples: readonly Sample[], options: CollateOptions = {}): Batch {
  if (samples.length === 0) throw new RangeError('collate: expected at least one sample');
  const divisor = options.sizeDivisor ?? 1;
  const images = samples.map((sample) => {
    if (sample.image === undefined) {
      throw new DataError(`collate: sample of image ${sample.imageId} (${sample.filePath}) has no image`);
    }
    return sample.image;
  });
  const height = Math.ceil(Math.max(...images.map((image) => image.height)) / divisor) * divisor;
  const width = Math.ceil(Math.max(...images.map((image) => image.width)) / divisor) * divisor;

  const pixels = new Float32Array(samples.length * height * width * 3);
  images.forEach((image, n) => {
    const rowLength = image.width * 3;
    const imageOffset = n * height * width * 3;
    for (let y = 0; y < image.height; y++) {
      // Float32Array.set converts uint8 pixels to float32 as it copies.
      pixels.set(image.data.subarray(y * rowLength, (y + 1) * rowLength), imageOffset + y * width * 3);
    }
  });

  const metas = samples.map((sample, n): ImageMeta => {
    const image = images[n]!;
    return {
      imageId: sample.imageId,
      originalShape: sample.originalShape ?? [image.height, image.width],
      imageShape: sample.imageShape ?? [image.height, image.width],
      padShape: [height, width],
      scaleFactor: [sample.scaleFactor[0], sample.scaleFactor[1]],
      flipped: sample.flipped,
      filePath: sample.filePath,
    };
  });
  const targets = samples.map(
    (sample): GroundTruth => ({
      boxes: sample.boxes ?? new Float32Array(0),
      labels: sample.labels ?? new Int32Array(0),
      ignoredBoxes: sample.ignoredBoxes ?? new Float32Array(0),
    }),
  );
  return { images: tf.tensor4d(pixels, [samples.length, height, width, 3], 'float32'), metas, targets };
}
