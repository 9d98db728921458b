/**
 * Registers 'ToyDetector', a detector small enough to train in milliseconds on the cpu backend,
 * for data-parallel tests. Tests import this module in the main thread and pass its URL to the
 * workers as an import, so that every worker registers the type too.
 */
import * as tf from '@tensorflow/tfjs-core';

import type { Detections, Detector, GroundTruth, ImageMeta, LossDict } from '../../../src/models/types.ts';
import { normal } from '../../../src/nn/init.ts';
import { Module } from '../../../src/nn/module.ts';
import { DETECTORS } from '../../../src/registry/index.ts';

/**
 * A 1x1 convolution from 3 to 2 channels trained towards 0.5, plus three parameters that test
 * the gradient rules: `labelScale` gets a gradient only from batches with a label-1 box,
 * `unused` never gets one, and the buffer `imagesSeen` counts the images of training batches.
 */
export class ToyDetector extends Module implements Detector {
  readonly numClasses = 2;
  private readonly weight: tf.Variable;
  private readonly bias: tf.Variable;
  private readonly labelScale: tf.Variable;
  private readonly imagesSeen: tf.Variable;

  constructor() {
    super();
    this.weight = this.addParameter('weight', normal([1, 1, 3, 2], 0.5));
    this.bias = this.addParameter('bias', normal([2], 0.1));
    this.labelScale = this.addParameter('label_scale', normal([1], 1));
    this.addParameter('unused', normal([4], 1));
    this.imagesSeen = this.addBuffer('images_seen', tf.zeros([1]));
  }

  loss(images: tf.Tensor4D, _metas: ImageMeta[], targets: GroundTruth[]): LossDict {
    if (this.training) this.imagesSeen.assign(tf.tidy(() => tf.add(this.imagesSeen, images.shape[0])));
    return tf.tidy(() => {
      const output = tf.add(tf.conv2d(images, this.weight as tf.Tensor4D, 1, 'valid'), this.bias);
      const lossMain = tf.mean(tf.square(tf.sub(output, 0.5))) as tf.Scalar;
      const hasLabel1 = targets.some((target) => target.labels.includes(1));
      const lossLabel = hasLabel1 ? (tf.mean(tf.square(tf.mul(this.labelScale, tf.mean(images)))) as tf.Scalar) : tf.scalar(0);
      return { loss_main: lossMain, loss_label: lossLabel };
    });
  }

  async predict(): Promise<Detections[]> {
    return [];
  }
}

DETECTORS.register('ToyDetector', () => new ToyDetector());
