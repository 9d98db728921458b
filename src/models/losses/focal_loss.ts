import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../../config/config.ts';
import { LOSSES } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import {
  checkSameShape,
  commonLossOptions,
  labelsToOneHot,
  powConstant,
  resolveReduction,
  stableBce,
  weightReduceLoss,
  type ClassificationLoss,
  type LossForwardOptions,
  type Reduction,
} from './utils.ts';

/**
 * Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017), element-wise:
 * `alpha_t * (1 - p_t)^gamma * BCE(x, t)` with p = sigmoid(x), `1 - p_t = p (1 - t) + (1 - p) t`
 * and `alpha_t = alpha t + (1 - alpha) (1 - t)`, as torchvision's `sigmoid_focal_loss` and
 * MMDetection's `py_sigmoid_focal_loss`. Soft targets in [0, 1] are allowed.
 *
 * The value and its gradient are evaluated in closed form, with `1 - p` computed as sigmoid(-x)
 * and the BCE as `max(x, 0) - x t + log1p(exp(-|x|))`, so both stay finite and accurate for logits
 * of ±100. The backward pass needs only the logits and targets, not the forward intermediates,
 * which matters for RetinaNet's [anchors, classes] score maps. No gradient flows to the targets.
 */
export function sigmoidFocalLossElementwise(logits: tf.Tensor, targets: tf.Tensor, gamma = 2, alpha = 0.25): tf.Tensor {
  if (!(gamma >= 0)) throw new RangeError(`sigmoidFocalLoss: gamma must be >= 0, got ${gamma}`);
  checkSameShape('sigmoidFocalLoss', logits, targets);
  const focal = tf.customGrad((x, save) => {
    const logitsInput = x as tf.Tensor;
    (save as tf.GradSaveFunc)([logitsInput, targets]);
    const value = tf.tidy(() => {
      const { alphaT, focalWeight, bce } = focalTerms(logitsInput, targets, gamma, alpha);
      return tf.mul(tf.mul(alphaT, focalWeight), bce);
    });
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.tidy(() => tf.mul(dy, focalGradient(saved[0]!, saved[1]!, gamma, alpha)))],
    };
  });
  return focal(logits);
}

interface FocalTerms {
  p: tf.Tensor;
  q: tf.Tensor;
  oneMinusPt: tf.Tensor;
  alphaT: tf.Tensor;
  focalWeight: tf.Tensor;
  bce: tf.Tensor;
}

/** Computes the factors of the focal loss, with `q` = 1 - p evaluated as sigmoid(-x) to avoid cancellation. */
function focalTerms(x: tf.Tensor, t: tf.Tensor, gamma: number, alpha: number): FocalTerms {
  const p = tf.sigmoid(x);
  const q = tf.sigmoid(tf.neg(x));
  const oneMinusT = tf.sub(1, t);
  const oneMinusPt = tf.add(tf.mul(p, oneMinusT), tf.mul(q, t));
  const alphaT = tf.add(tf.mul(t, alpha), tf.mul(oneMinusT, 1 - alpha));
  const focalWeight = powConstant(oneMinusPt, gamma);
  const bce = stableBce(x, t);
  return { p, q, oneMinusPt, alphaT, focalWeight, bce };
}

/**
 * d loss / d x = alpha_t * (gamma (1 - p_t)^(gamma - 1) * p (1 - p) (1 - 2 t) * BCE + (1 - p_t)^gamma (p - t)),
 * from d(1 - p_t)/dx = p (1 - p) (1 - 2 t) and d BCE / dx = p - t.
 */
function focalGradient(x: tf.Tensor, t: tf.Tensor, gamma: number, alpha: number): tf.Tensor {
  const { p, q, oneMinusPt, alphaT, focalWeight, bce } = focalTerms(x, t, gamma, alpha);
  const bceGradient = tf.mul(focalWeight, tf.sub(p, t));
  if (gamma === 0) return tf.mul(alphaT, bceGradient);
  const weightDerivative = tf.mul(tf.mul(p, q), tf.sub(1, tf.mul(t, 2)));
  let powered = tf.mul(powConstant(oneMinusPt, gamma - 1), gamma);
  // For gamma < 1 the power is infinite where 1 - p_t = 0, and there the product's limit is 0.
  if (gamma < 1) powered = tf.where(tf.greater(oneMinusPt, 0), powered, tf.zerosLike(powered));
  return tf.mul(alphaT, tf.add(tf.mul(tf.mul(powered, weightDerivative), bce), bceGradient));
}

/** torchvision `sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)`. */
export function sigmoidFocalLoss(
  logits: tf.Tensor,
  targets: tf.Tensor,
  options: { alpha?: number; gamma?: number; reduction?: Reduction } = {},
): tf.Tensor {
  return tf.tidy(() => {
    const loss = sigmoidFocalLossElementwise(logits, targets, options.gamma ?? 2, options.alpha ?? 0.25);
    return weightReduceLoss(loss, undefined, resolveReduction('none', options.reduction));
  });
}

export interface FocalLossOptions {
  /** Only sigmoid focal loss exists, as in MMDetection 2.x (default true). */
  useSigmoid?: boolean;
  gamma?: number;
  alpha?: number;
  reduction?: Reduction;
  lossWeight?: number;
}

declare module '../../config/component_types.ts' {
  interface LossTypes {
    FocalLoss: FocalLossOptions;
  }
}

const OPTION_KEYS = ['useSigmoid', 'gamma', 'alpha', 'reduction', 'lossWeight'] as const;

/**
 * MMDetection 2.x `FocalLoss`. `forward(logits [N, K], target)` takes integer labels `[N]`
 * (label K, the background, is an all-zero target row) or float targets `[N, K]`. A weight of
 * shape `[N]` weights whole rows.
 */
export class FocalLoss implements ClassificationLoss {
  readonly useSigmoid = true;
  readonly gamma: number;
  readonly alpha: number;
  readonly reduction: Reduction;
  readonly lossWeight: number;

  constructor(options: FocalLossOptions = {}, path = 'FocalLoss') {
    checkOptionKeys(path, options, OPTION_KEYS);
    if (options.useSigmoid === false) throw new ConfigError(`${path}: only the sigmoid focal loss exists, so 'useSigmoid' must be true`);
    ({ reduction: this.reduction, lossWeight: this.lossWeight } = commonLossOptions(path, options));
    this.gamma = options.gamma ?? 2;
    this.alpha = options.alpha ?? 0.25;
    if (!(this.gamma >= 0)) throw new ConfigError(`${path}: 'gamma' must be >= 0, got ${JSON.stringify(options.gamma)}`);
    if (!(this.alpha >= 0 && this.alpha <= 1)) throw new ConfigError(`${path}: 'alpha' must be in [0, 1], got ${JSON.stringify(options.alpha)}`);
  }

  forward(pred: tf.Tensor, target: tf.Tensor, options: LossForwardOptions = {}): tf.Tensor {
    const reduction = resolveReduction(this.reduction, options.reductionOverride);
    return tf.tidy(() => {
      const targets = target.rank === pred.rank - 1 ? labelsToOneHot(target, pred.shape[pred.rank - 1]!) : target;
      const loss = sigmoidFocalLossElementwise(pred, targets, this.gamma, this.alpha);
      let weight = options.weight;
      if (weight !== undefined && weight.rank === 1 && pred.rank === 2) weight = tf.reshape(weight, [-1, 1]);
      return tf.mul(weightReduceLoss(loss, weight, reduction, options.avgFactor), this.lossWeight);
    });
  }
}

LOSSES.register('FocalLoss', (options: FocalLossOptions, path) => new FocalLoss(options, path));
