/**
 * Registers 'SyncBnToyDetector', a detector with one batch norm that trains in milliseconds on
 * the cpu backend, for the SyncBN tests of data-parallel training. Tests import this module in
 * the main thread and pass its URL to the workers as an import, so that every worker registers
 * the type too.
 */
import * as tf from '@tensorflow/tfjs-core';
import { workerData } from 'node:worker_threads';

import { buildNorm, resolveNorm, type NormType } from '../../../src/models/norm.ts';
import type { Detections, Detector, GroundTruth, ImageMeta, LossDict } from '../../../src/models/types.ts';
import { normal } from '../../../src/nn/init.ts';
import type { BatchNorm2d } from '../../../src/nn/layers.ts';
import { Module } from '../../../src/nn/module.ts';
import { DETECTORS } from '../../../src/registry/index.ts';

export interface SyncBnToyFault {
  /** 'exit' ends the worker thread with code 3, 'hang' blocks it for a minute. */
  kind: 'exit' | 'hang';
  /** Index of the worker that fails. The main thread, which has no worker index, never fails. */
  worker: number;
}

export interface SyncBnToyOptions {
  norm: NormType;
  /** A failure between the forward pass and the backward pass of the first step, in one worker. */
  fault?: SyncBnToyFault;
}

const workerIndex = (workerData as { index?: number } | null)?.index;

/**
 * A 1x1 convolution from 3 to 4 channels, a batch norm ('BN' or 'SyncBN'), ReLU and a 1x1
 * convolution to 2 channels, trained towards half of the first two image channels.
 */
export class SyncBnToyDetector extends Module implements Detector {
  readonly numClasses = 2;
  readonly norm: BatchNorm2d;
  private readonly conv1: tf.Variable;
  private readonly conv2: tf.Variable;
  private readonly fault: SyncBnToyFault | undefined;

  constructor(options: SyncBnToyOptions) {
    super();
    this.conv1 = this.addParameter('conv1', normal([1, 1, 3, 4], 0.5));
    this.norm = this.addModule('norm', buildNorm(resolveNorm(options.norm, 'model'), 4, 'model') as BatchNorm2d);
    this.conv2 = this.addParameter('conv2', normal([1, 1, 4, 2], 0.5));
    this.fault = options.fault;
  }

  /** Runs the network, returning its output `[N, H, W, 2]`. */
  features(images: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const hidden = tf.relu(this.norm.forward(tf.conv2d(images, this.conv1 as tf.Tensor4D, 1, 'valid')));
      return tf.conv2d(hidden, this.conv2 as tf.Tensor4D, 1, 'valid');
    });
  }

  /** Mean squared error of `features` against half of the first two channels of `images`. */
  lossOf(features: tf.Tensor4D, images: tf.Tensor4D): tf.Scalar {
    return tf.tidy(() => {
      const target = tf.mul(tf.slice(images, [0, 0, 0, 0], [-1, -1, -1, 2]), 0.5);
      return tf.mean(tf.square(tf.sub(features, target))) as tf.Scalar;
    });
  }

  loss(images: tf.Tensor4D, _metas: ImageMeta[], _targets: GroundTruth[]): LossDict {
    return tf.tidy(() => {
      const features = this.features(images);
      if (this.fault !== undefined && this.fault.worker === workerIndex) {
        if (this.fault.kind === 'exit') process.exit(3);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
      }
      return { loss_main: this.lossOf(features, images) };
    });
  }

  async predict(): Promise<Detections[]> {
    return [];
  }
}

DETECTORS.register('SyncBnToyDetector', (options: SyncBnToyOptions) => new SyncBnToyDetector(options));
