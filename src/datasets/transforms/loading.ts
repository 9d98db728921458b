/**
 * Loading transforms: decode the image file and copy the dataset's annotations into the
 * sample, as MMDetection's LoadImageFromFile and LoadAnnotations.
 *
 * The decoded image's size can differ from the width and height in the annotation file,
 * after a wrong record or with EXIF orientation applied on purpose. Then the boxes are
 * scaled per axis to the decoded size, and a warning names the file, the image id and both
 * sizes. The image is never changed to fit the annotations.
 */
import { checkOptionKeys } from '../../config/config.ts';
import { ConfigError } from '../../utils/errors.ts';
import { getLogger } from '../../utils/logger.ts';
import { decodeImageFile } from '../image_io.ts';
import type { Sample, Transform } from '../sample.ts';

const logger = getLogger('datasets');

export interface LoadImageFromFileOptions {
  /** Convert the pixels to float32 right after decoding, as MMDetection's `to_float32` (default false). */
  toFloat32?: boolean;
  /**
   * Apply the EXIF orientation tag (default false, because COCO annotations refer to the
   * stored pixel grid). mmcv 1.x applies it for `color_type='color'`.
   */
  applyExifOrientation?: boolean;
}

export interface LoadAnnotationsOptions {
  /** Load the ground-truth boxes and crowd boxes (default true). */
  withBbox?: boolean;
  /** Load the labels (default true). */
  withLabel?: boolean;
  /** Instance masks are not supported yet; only false is accepted. */
  withMask?: boolean;
}

declare module '../../config/component_types.ts' {
  interface TransformTypes {
    LoadImageFromFile: LoadImageFromFileOptions;
    LoadAnnotations: LoadAnnotationsOptions;
  }
}

function scaleBoxes(boxes: Float32Array, scaleX: number, scaleY: number): void {
  for (let i = 0; i < boxes.length; i += 4) {
    boxes[i] = boxes[i]! * scaleX;
    boxes[i + 1] = boxes[i + 1]! * scaleY;
    boxes[i + 2] = boxes[i + 2]! * scaleX;
    boxes[i + 3] = boxes[i + 3]! * scaleY;
  }
}

/**
 * Scales the loaded boxes from the annotation file's image size to the decoded size, once
 * both the image and the boxes are in the sample. Both loading transforms call it, so the
 * result does not depend on their order.
 */
function matchAnnotationsToImage(sample: Sample): void {
  if (sample.annotationsMatchImage === true || sample.annotatedShape === undefined) return;
  if (sample.originalShape === undefined || sample.boxes === undefined) return;
  const [annotatedHeight, annotatedWidth] = sample.annotatedShape;
  const [height, width] = sample.originalShape;
  if (annotatedHeight !== height || annotatedWidth !== width) {
    scaleBoxes(sample.boxes, width / annotatedWidth, height / annotatedHeight);
    if (sample.ignoredBoxes !== undefined) scaleBoxes(sample.ignoredBoxes, width / annotatedWidth, height / annotatedHeight);
  }
  sample.annotationsMatchImage = true;
}

export class LoadImageFromFile implements Transform {
  readonly type = 'LoadImageFromFile';
  private readonly toFloat32: boolean;
  private readonly applyExifOrientation: boolean;

  constructor(options: LoadImageFromFileOptions = {}) {
    checkOptionKeys(this.type, options, ['toFloat32', 'applyExifOrientation']);
    this.toFloat32 = options.toFloat32 ?? false;
    this.applyExifOrientation = options.applyExifOrientation ?? false;
  }

  async apply(sample: Sample): Promise<Sample> {
    const decoded = await decodeImageFile(sample.filePath, {
      imageId: sample.imageId,
      applyExifOrientation: this.applyExifOrientation,
    });
    const data = this.toFloat32 ? Float32Array.from(decoded.data) : decoded.data;
    sample.image = { data, height: decoded.height, width: decoded.width };
    sample.originalShape = [decoded.height, decoded.width];
    sample.imageShape = [decoded.height, decoded.width];
    sample.padShape = [decoded.height, decoded.width];

    // NOTE: only boxes are scaled. In test mode the detections stay in decoded-image
    // coordinates, so they do not line up with such an image's boxes in the annotation file.
    if (sample.annotatedShape !== undefined) {
      const [annotatedHeight, annotatedWidth] = sample.annotatedShape;
      if (annotatedHeight !== decoded.height || annotatedWidth !== decoded.width) {
        logger.warnOnce(
          `size-mismatch:${sample.filePath}`,
          `image ${sample.filePath} (image id ${sample.imageId}) decodes to ${decoded.width} x ${decoded.height} ` +
            `(width x height) but the annotation file says ${annotatedWidth} x ${annotatedHeight}; ` +
            'its boxes are scaled to the decoded size',
        );
      }
    }
    matchAnnotationsToImage(sample);
    return sample;
  }
}

export class LoadAnnotations implements Transform {
  readonly type = 'LoadAnnotations';
  private readonly withBbox: boolean;
  private readonly withLabel: boolean;

  constructor(options: LoadAnnotationsOptions = {}) {
    checkOptionKeys(this.type, options, ['withBbox', 'withLabel', 'withMask']);
    // TODO: load instance masks (polygons and RLE) for Mask R-CNN.
    if (options.withMask === true) {
      throw new ConfigError(`${this.type}: withMask is not supported yet (instance masks are not loaded); set it to false`);
    }
    this.withBbox = options.withBbox ?? true;
    this.withLabel = options.withLabel ?? true;
  }

  apply(sample: Sample): Sample {
    const info = sample.annotationInfo;
    if (info === undefined) {
      throw new ConfigError(
        `${this.type}: image ${sample.imageId} (${sample.filePath}) has no annotations; ` +
          'remove LoadAnnotations from test-mode pipelines',
      );
    }
    // Copies, so that later in-place transforms never change the dataset's own arrays.
    if (this.withBbox) {
      sample.boxes = info.boxes.slice();
      sample.ignoredBoxes = info.ignoredBoxes.slice();
    }
    if (this.withLabel) sample.labels = info.labels.slice();
    matchAnnotationsToImage(sample);
    return sample;
  }
}
