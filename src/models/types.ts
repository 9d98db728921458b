import type * as tf from '@tensorflow/tfjs-core';

import type { CocoRle } from '../coco/types.ts';
import type { Module } from '../nn/module.ts';

/**
 * Interfaces between the pipeline slots. Shapes use this shorthand:
 *   N  images in the batch          H, W  padded batch height and width
 *   K  foreground classes           A     anchors per feature-map cell
 *   M  ground-truth boxes of one image
 * Tensors are NHWC float32; boxes are absolute-pixel [x1, y1, x2, y2]; class labels run
 * 0..K-1 and the background label is K.
 */

/** A backbone maps images `[N, H, W, 3]` to feature maps, finest first (C2..C5 for ResNets). */
export interface Backbone extends Module {
  forward(images: tf.Tensor4D): tf.Tensor4D[];
  /** Channels of each returned feature map, in order. */
  readonly outChannels: readonly number[];
  /** Stride of each returned feature map relative to the input, in order. */
  readonly outStrides: readonly number[];
}

/** A neck maps backbone features to the pyramid the heads read (FPN: P2..P6 or P3..P7). */
export interface Neck extends Module {
  forward(features: tf.Tensor4D[]): tf.Tensor4D[];
  readonly outChannels: number;
  readonly numOutputs: number;
}

/** Per-image metadata that travels with a batch. */
export interface ImageMeta {
  imageId: number;
  /** Size of the original image as decoded: [height, width]. */
  originalShape: [number, number];
  /** Size after resizing, before padding: [height, width]. Boxes are clipped to this. */
  imageShape: [number, number];
  /** Size of the padded batch tensor: [height, width]. */
  padShape: [number, number];
  /** Factors that map original coordinates to resized ones: [scaleX, scaleY]. */
  scaleFactor: [number, number];
  flipped: boolean;
  filePath: string;
}

/** Ground truth of one image, in the coordinates of the resized (and flipped) image. */
export interface GroundTruth {
  /** `[M, 4]` xyxy boxes. */
  boxes: Float32Array;
  /** `[M]` labels in 0..K-1. */
  labels: Int32Array;
  /** `[M', 4]` crowd regions, ignored in training. */
  ignoredBoxes?: Float32Array;
}

/** Detections of one image in original-image coordinates. */
export interface Detections {
  /** `[D, 4]` xyxy boxes. */
  boxes: Float32Array;
  /** `[D]` scores. */
  scores: Float32Array;
  /** `[D]` labels in 0..K-1. */
  labels: Int32Array;
  /** `[D]` instance masks at the original image size, as COCO RLEs. Only models that predict masks set it. */
  masks?: CocoRle[];
}

/** Named scalar losses of one step; their sum is what is minimised. */
export type LossDict = Record<string, tf.Scalar>;

/** A detector: images in, losses (training) or detections (inference) out. */
export interface Detector extends Module {
  readonly numClasses: number;
  /** Losses for a batch; every returned tensor is a scalar. */
  loss(images: tf.Tensor4D, metas: ImageMeta[], targets: GroundTruth[]): LossDict;
  /** Detections per image, mapped back to the original image. Returns plain arrays (no tensors). */
  predict(images: tf.Tensor4D, metas: ImageMeta[]): Promise<Detections[]>;
}

/** A dense (one-stage or RPN) head: per-level predictions, training losses and detections. */
export interface DenseHead extends Module {
  readonly numClasses: number;
  /** Raw per-level outputs (class logits and box deltas); used for complexity counting. */
  forward(features: tf.Tensor4D[]): unknown;
  loss(features: tf.Tensor4D[], metas: ImageMeta[], targets: GroundTruth[]): LossDict;
  predict(features: tf.Tensor4D[], metas: ImageMeta[]): Promise<Detections[]>;
}
