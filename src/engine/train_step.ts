import * as tf from '@tensorflow/tfjs-core';

import type { Detector, GroundTruth, ImageMeta } from '../models/types.ts';
import '../backends/register_gradients.ts';
import { NonFiniteLossError } from '../utils/errors.ts';
import { clipGradNorm, type Optimizer } from './optimizer.ts';

export interface Batch {
  /** `[N, H, W, 3]` normalised, padded images; the batch owns this tensor. */
  images: tf.Tensor4D;
  metas: ImageMeta[];
  targets: GroundTruth[];
}

export interface StepResult {
  /** Each loss term and their sum (`loss`), as numbers. */
  losses: Record<string, number>;
  /** Global gradient norm before clipping, when clipping is on. */
  gradNorm?: number;
}

/**
 * Runs one optimisation step: losses and gradients of every trainable parameter, a finiteness
 * check, optional gradient-norm clipping, then the optimizer's update. Every tensor made here is
 * freed before returning; `batch.images` stays with the caller. `iteration` (1-based) only
 * names the step in the error raised when a loss is NaN or infinite, which leaves the
 * parameters untouched.
 */
export function trainStep(
  model: Detector,
  batch: Batch,
  optimizer: Optimizer,
  lr: number,
  iteration: number,
  gradClipMaxNorm?: number,
): StepResult {
  const trainable = model.trainableParameters();
  const nameOf = new Map(trainable.map(([name, variable]) => [variable.name, name]));
  const variables = new Map(trainable);
  let lossTerms: Record<string, tf.Scalar> = {};

  const { value, grads } = tf.variableGrads(() => {
    lossTerms = model.loss(batch.images, batch.metas, batch.targets);
    for (const term of Object.values(lossTerms)) tf.keep(term);
    return tf.addN(Object.values(lossTerms)) as tf.Scalar;
  }, trainable.map(([, variable]) => variable));

  const names = Object.keys(lossTerms);
  const stacked = tf.stack([...names.map((name) => lossTerms[name]!), value]);
  const values = stacked.dataSync();
  stacked.dispose();
  tf.dispose(lossTerms);
  value.dispose();

  const losses: Record<string, number> = {};
  names.forEach((name, i) => (losses[name] = values[i]!));
  losses['loss'] = values[names.length]!;

  const named = new Map<string, tf.Tensor>();
  for (const [variableName, grad] of Object.entries(grads)) named.set(nameOf.get(variableName)!, grad);

  try {
    if (!Object.values(losses).every(Number.isFinite)) {
      const lossText = Object.entries(losses).map(([k, v]) => `${k}=${v}`).join(', ');
      throw new NonFiniteLossError(
        `loss is not finite at iteration ${iteration} (${lossText}); parameters were not updated. ` +
          'Lower the learning rate or enable gradient clipping (optimizerConfig.gradClip).',
        iteration,
        losses,
      );
    }
    const result: StepResult = { losses };
    if (gradClipMaxNorm !== undefined) result.gradNorm = clipGradNorm(named, gradClipMaxNorm);
    optimizer.step(variables, named, lr);
    return result;
  } finally {
    tf.dispose([...named.values()]);
  }
}
