import * as tf from '@tensorflow/tfjs-core';

import { ConfigError } from '../../utils/errors.ts';

/** Reduction of an element-wise loss to the returned value. */
export type Reduction = 'none' | 'mean' | 'sum';

export const REDUCTIONS: readonly Reduction[] = ['none', 'mean', 'sum'];

/** Per-call arguments of a loss, as MMDetection's loss `forward`. */
export interface LossForwardOptions {
  /** Element-wise weight, multiplied into the element-wise loss before the reduction. */
  weight?: tf.Tensor;
  /** Divisor of the weighted sum for reduction 'mean', in place of the element count. */
  avgFactor?: number;
  /** Reduction for this call only. */
  reductionOverride?: Reduction;
}

/** A registered loss: predictions and targets in, a loss tensor (scaled by `lossWeight`) out. */
export interface Loss {
  readonly lossWeight: number;
  readonly reduction: Reduction;
  forward(pred: tf.Tensor, target: tf.Tensor, options?: LossForwardOptions): tf.Tensor;
}

/** A classification loss, which also decides whether class scores are sigmoids or a softmax. */
export interface ClassificationLoss extends Loss {
  readonly useSigmoid: boolean;
}

/** float32 machine epsilon, which MMDetection 2.x adds to `avgFactor` to avoid dividing by 0. */
export const FLOAT32_EPS = 1.1920928955078125e-7;

/** Reduces an element-wise loss: 'none' returns it, 'mean' averages every element, 'sum' adds them. */
export function reduceLoss(loss: tf.Tensor, reduction: Reduction): tf.Tensor {
  switch (reduction) {
    case 'none':
      return loss;
    case 'mean':
      return tf.mean(loss);
    case 'sum':
      return tf.sum(loss);
  }
}

/**
 * Applies an element-wise `weight` and reduces, as MMDetection 2.x `weight_reduce_loss`:
 * with `avgFactor`, 'mean' is `sum(loss * weight) / (avgFactor + eps)` with eps = float32
 * epsilon, 'none' ignores it, and 'sum' rejects it.
 */
export function weightReduceLoss(loss: tf.Tensor, weight: tf.Tensor | undefined, reduction: Reduction, avgFactor?: number): tf.Tensor {
  return tf.tidy(() => {
    const weighted = weight === undefined ? loss : tf.mul(loss, weight);
    if (avgFactor === undefined) return reduceLoss(weighted, reduction);
    if (reduction === 'mean') return tf.div(tf.sum(weighted), avgFactor + FLOAT32_EPS);
    if (reduction === 'none') return weighted;
    throw new RangeError('avgFactor cannot be used with reduction "sum". Use "mean" or leave avgFactor out');
  });
}

/** Returns `override` if given, else `fallback`, after checking that it is a known reduction. */
export function resolveReduction(fallback: Reduction, override: Reduction | undefined): Reduction {
  const reduction = override ?? fallback;
  if (!REDUCTIONS.includes(reduction)) {
    throw new RangeError(`invalid reduction '${String(reduction)}', expected one of ${REDUCTIONS.join(', ')}`);
  }
  return reduction;
}

/** Checks the options shared by every registered loss and returns them with defaults. */
export function commonLossOptions(
  path: string,
  options: { reduction?: Reduction; lossWeight?: number },
): { reduction: Reduction; lossWeight: number } {
  const reduction = options.reduction ?? 'mean';
  if (!REDUCTIONS.includes(reduction)) {
    throw new ConfigError(`${path}: 'reduction' must be one of ${REDUCTIONS.join(', ')}, got ${JSON.stringify(reduction)}`);
  }
  const lossWeight = options.lossWeight ?? 1;
  if (typeof lossWeight !== 'number' || !Number.isFinite(lossWeight)) {
    throw new ConfigError(`${path}: 'lossWeight' must be a finite number, got ${JSON.stringify(lossWeight)}`);
  }
  return { reduction, lossWeight };
}

/** Raises `x` to a constant power with the cheapest op (and exact results for 0, 1 and 2). */
export function powConstant(x: tf.Tensor, exponent: number): tf.Tensor {
  if (exponent === 0) return tf.onesLike(x);
  if (exponent === 1) return x;
  if (exponent === 2) return tf.square(x);
  return tf.pow(x, exponent);
}

/**
 * Converts integer class labels `[N]` to one-hot float targets `[N, numClasses]`. A label outside
 * [0, numClasses) gives an all-zero row, so the background label numClasses is "no class".
 * Unlike `tf.oneHot`, which requires a depth of at least 2, one class (RPN) works.
 */
export function labelsToOneHot(labels: tf.Tensor, numClasses: number): tf.Tensor {
  return tf.tidy(() => {
    const classIds = tf.range(0, numClasses, 1, 'int32');
    return tf.cast(tf.equal(tf.expandDims(tf.cast(labels, 'int32'), -1), classIds), 'float32');
  });
}

/** Binary cross entropy with logits, `max(x, 0) - x t + log1p(exp(-|x|))`, stable for any x. */
export function stableBce(x: tf.Tensor, t: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.add(tf.sub(tf.relu(x), tf.mul(x, t)), tf.log1p(tf.exp(tf.neg(tf.abs(x))))));
}

/** Throws a RangeError naming `name` unless the targets have the predictions' shape. */
export function checkSameShape(name: string, a: tf.Tensor, b: tf.Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((size, i) => size !== b.shape[i])) {
    throw new RangeError(`${name}: targets of shape [${b.shape}] do not match predictions of shape [${a.shape}]`);
  }
}
