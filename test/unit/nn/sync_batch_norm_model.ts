import * as tf from '@tensorflow/tfjs-core';

import { Module } from '../../../src/nn/module.ts';
import { SyncBatchNorm2d } from '../../../src/nn/sync_batch_norm.ts';

/** Two SyncBN layers, `first` and `second`, with the given scale and shift, for the SyncBN tests. */
export class NormPair extends Module {
  readonly first: SyncBatchNorm2d;
  readonly second: SyncBatchNorm2d;

  constructor(channels: number, weight?: Float32Array, bias?: Float32Array) {
    super();
    this.first = this.addModule('first', new SyncBatchNorm2d(channels));
    this.second = this.addModule('second', new SyncBatchNorm2d(channels));
    tf.tidy(() => {
      for (const layer of [this.first, this.second]) {
        if (weight !== undefined) layer.weight.assign(tf.tensor1d(weight));
        if (bias !== undefined) layer.bias.assign(tf.tensor1d(bias));
      }
    });
  }
}
