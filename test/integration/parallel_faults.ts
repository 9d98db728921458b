/**
 * Registers 'FaultyRetinaNet': a RetinaNet whose loss fails on purpose in one data-parallel
 * worker, for testing how training stops. Tests import this module in the main thread and pass
 * its URL as `workerImports`, so that every worker registers the type too.
 */
import * as tf from '@tensorflow/tfjs-core';
import { workerData } from 'node:worker_threads';

import type { Detector, GroundTruth, ImageMeta, LossDict } from '../../src/models/types.ts';
import { DETECTORS } from '../../src/registry/index.ts';
import '../../src/register_all.ts';

export interface Fault {
  /**
   * 'throw' makes the loss throw, 'nan' makes loss_cls NaN, 'exit' ends the worker thread with
   * code 3, and 'uncaught' throws from a microtask, outside any request handler.
   */
  kind: 'throw' | 'nan' | 'exit' | 'uncaught';
  /** Index of the worker that fails. The main thread, which has no worker index, never fails. */
  worker: number;
  /** The 1-based call of `loss` in that worker that fails (one call per training step). */
  call: number;
}

const workerIndex = (workerData as { index?: number } | null)?.index;

function withFault(model: Detector, fault: Fault): Detector {
  let calls = 0;
  return Object.assign(Object.create(model) as Detector, {
    loss(images: tf.Tensor4D, metas: ImageMeta[], targets: GroundTruth[]): LossDict {
      calls += 1;
      const failsNow = workerIndex === fault.worker && calls === fault.call;
      if (failsNow && fault.kind === 'throw') throw new Error(`injected failure in call ${calls}`);
      if (failsNow && fault.kind === 'exit') process.exit(3);
      if (failsNow && fault.kind === 'uncaught') {
        queueMicrotask(() => {
          throw new Error('uncaught failure');
        });
      }
      const losses = model.loss(images, metas, targets);
      if (!failsNow || fault.kind !== 'nan') return losses;
      const poisoned = tf.mul(losses['loss_cls']!, NaN) as tf.Scalar;
      losses['loss_cls']!.dispose();
      return { ...losses, loss_cls: poisoned };
    },
  });
}

DETECTORS.register('FaultyRetinaNet', ({ fault, ...options }: { fault: Fault } & Record<string, unknown>, path) =>
  withFault(DETECTORS.build({ ...options, type: 'RetinaNet' }, path), fault),
);
