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

/** Losses of one forward pass and the gradients of the trainable parameters. */
export interface Gradients {
  /** Each loss term and their sum (`loss`), as numbers. */
  losses: Record<string, number>;
  /**
   * Gradient of each trainable parameter, by parameter name. A parameter that the loss does
   * not depend on has no entry. The caller owns and disposes the tensors.
   */
  grads: Map<string, tf.Tensor>;
}

/** Computes the losses of `batch` and the gradients of every trainable parameter of `model`. */
export function computeGradients(model: Detector, batch: Batch): Gradients {
  const trainable = model.trainableParameters();
  const nameOf = new Map(trainable.map(([name, variable]) => [variable.name, name]));
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
  return { losses, grads: named };
}

/**
 * Throws NonFiniteLossError when a loss is NaN or infinite. `source`, when given, names where
 * the losses come from (for example "in worker 1") and goes after the iteration in the message.
 */
export function checkLossesFinite(losses: Record<string, number>, iteration: number, source?: string): void {
  if (Object.values(losses).every(Number.isFinite)) return;
  const lossText = Object.entries(losses).map(([k, v]) => `${k}=${v}`).join(', ');
  const where = source === undefined ? '' : ` ${source}`;
  throw new NonFiniteLossError(
    `loss is not finite at iteration ${iteration}${where} (${lossText}); parameters were not updated. ` +
      'Lower the learning rate or enable gradient clipping (optimizerConfig.gradClip).',
    iteration,
    losses,
  );
}

/**
 * Clips `grads` to a global norm of `gradClipMaxNorm` when it is given, then applies the
 * optimizer's update to the trainable parameters of `model`. Clipping replaces entries of
 * `grads` and disposes the old tensors, and the caller still disposes the tensors left in it.
 * Returns the gradient norm before clipping, when clipping is on.
 */
export function applyGradients(
  model: Detector,
  grads: Map<string, tf.Tensor>,
  optimizer: Optimizer,
  lr: number,
  gradClipMaxNorm?: number,
): number | undefined {
  const gradNorm = gradClipMaxNorm === undefined ? undefined : clipGradNorm(grads, gradClipMaxNorm);
  optimizer.step(new Map(model.trainableParameters()), grads, lr);
  return gradNorm;
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
  const { losses, grads } = computeGradients(model, batch);
  try {
    checkLossesFinite(losses, iteration);
    const result: StepResult = { losses };
    const gradNorm = applyGradients(model, grads, optimizer, lr, gradClipMaxNorm);
    if (gradNorm !== undefined) result.gradNorm = gradNorm;
    return result;
  } finally {
    tf.dispose([...grads.values()]);
  }
}
