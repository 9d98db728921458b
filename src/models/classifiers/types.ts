import type * as tf from '@tensorflow/tfjs-core';

import type { Module } from '../../nn/module.ts';

/** An image classifier: images `[N, H, W, 3]` in, class logits `[N, numClasses]` out. */
export interface Classifier extends Module {
  readonly numClasses: number;
  forward(images: tf.Tensor4D): tf.Tensor2D;
}
