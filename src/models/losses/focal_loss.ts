import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../../config/config.ts';
import { LOSSES } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import {
  checkSameShape,
  FLOAT32_EPS,
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
/**
 * Sum of the sigmoid focal loss over logits `[M, K]` with hard labels, without building
 * one-hot targets. `labels[m]` in [0, K) marks the one positive class of row m, and any other
 * value (K for background) marks none; `rowWeights[m]` scales the whole row (0 for ignored
 * anchors). With t in {0, 1} the element loss is
 *   t = 0:  (1 - alpha) * p^gamma * softplus(x)
 *   t = 1:  alpha * (1 - p)^gamma * softplus(-x)
 * so the sum is the t = 0 term over every element plus, at the few positive elements, the
 * difference of the two terms. This equals the element-wise loss summed with one-hot targets,
 * in about a third of the full-size tensor operations (which dominate a RetinaNet step on
 * CPU backends), and the gradient is written out in closed form.
 */
export function sigmoidFocalLossSumHardLabels(
  logits: tf.Tensor2D,
  labels: Int32Array,
  rowWeights: Float32Array | undefined,
  gamma = 2,
  alpha = 0.25,
): tf.Scalar {
  const [rows, classes] = logits.shape;
  if (labels.length !== rows) throw new RangeError(`sigmoidFocalLossSumHardLabels: ${labels.length} labels for ${rows} rows`);
  if (rowWeights !== undefined && rowWeights.length !== rows) {
    throw new RangeError(`sigmoidFocalLossSumHardLabels: ${rowWeights.length} row weights for ${rows} rows`);
  }
  const positives: number[] = [];
  const positiveWeights: number[] = [];
  for (let m = 0; m < rows; m++) {
    const label = labels[m]!;
    const weight = rowWeights === undefined ? 1 : rowWeights[m]!;
    if (label >= 0 && label < classes && weight !== 0) {
      positives.push(m * classes + label);
      positiveWeights.push(weight);
    }
  }

  const focal = tf.customGrad((x, save) => {
    const input = x as tf.Tensor2D;
    const weight = rowWeights === undefined ? undefined : tf.tensor2d(rowWeights, [rows, 1]);
    const hasPositives = positives.length > 0;
    const forward = tf.tidy(() => {
      const p = tf.sigmoid(input);
      const softplusX = tf.softplus(input);
      const negativeTerm = tf.mul(tf.mul(powConstant(p, gamma), softplusX), 1 - alpha);
      let total = tf.sum(weight === undefined ? negativeTerm : tf.mul(negativeTerm, weight));

      const indices = hasPositives ? tf.tensor1d(positives, 'int32') : undefined;
      const indicesNd = hasPositives ? tf.tensor2d(positives, [positives.length, 1], 'int32') : undefined;
      const posWeight = hasPositives ? tf.tensor1d(positiveWeights) : undefined;
      let xPos: tf.Tensor | undefined;
      if (indices !== undefined && posWeight !== undefined) {
        xPos = tf.gather(tf.reshape(input, [-1]), indices);
        const pPos = tf.sigmoid(xPos);
        const positiveTerm = tf.mul(tf.mul(powConstant(tf.sub(1, pPos), gamma), tf.softplus(tf.neg(xPos))), alpha);
        const negativeAtPos = tf.mul(tf.mul(powConstant(pPos, gamma), tf.softplus(xPos)), 1 - alpha);
        total = tf.add(total, tf.sum(tf.mul(tf.sub(positiveTerm, negativeAtPos), posWeight)));
      }
      const kept: tf.Tensor[] = [p, softplusX];
      if (indicesNd !== undefined && posWeight !== undefined && xPos !== undefined) kept.push(indicesNd, posWeight, xPos);
      return { total, kept };
    });
    const toSave = weight === undefined ? forward.kept : [forward.kept[0]!, forward.kept[1]!, weight, ...forward.kept.slice(2)];
    // The engine keeps clones of saved tensors (only while recording a tape) and frees them
    // after backpropagation, so the originals are freed here.
    (save as tf.GradSaveFunc)(toSave);
    tf.dispose(toSave);
    return {
      value: forward.total as tf.Scalar,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
          tf.tidy(() => {
            const [pSaved, softplusSaved] = saved as [tf.Tensor, tf.Tensor];
            let next = 2;
            const weightSaved = weight === undefined ? undefined : saved[next++]!;
            // d/dx (1 - alpha) p^g softplus(x) = (1 - alpha) p^g (g (1 - p) softplus(x) + p)
            let grad = tf.mul(
              tf.mul(powConstant(pSaved, gamma), tf.add(tf.mul(tf.mul(tf.sub(1, pSaved), softplusSaved), gamma), pSaved)),
              1 - alpha,
            );
            if (weightSaved !== undefined) grad = tf.mul(grad, weightSaved);
            if (hasPositives) {
              const indicesSaved = saved[next++]! as tf.Tensor2D;
              const posWeightSaved = saved[next++]!;
              const xPosSaved = saved[next]!;
              const pPos = tf.sigmoid(xPosSaved);
              const spPos = tf.softplus(xPosSaved);
              const qPos = tf.sub(1, pPos);
              // d/dx alpha (1 - p)^g softplus(-x) = -alpha (1 - p)^g (g p softplus(-x) + 1 - p)
              const dPositive = tf.neg(tf.mul(tf.mul(powConstant(qPos, gamma), tf.add(tf.mul(tf.mul(pPos, tf.softplus(tf.neg(xPosSaved))), gamma), qPos)), alpha));
              const dNegative = tf.mul(tf.mul(powConstant(pPos, gamma), tf.add(tf.mul(tf.mul(qPos, spPos), gamma), pPos)), 1 - alpha);
              const correction = tf.mul(tf.sub(dPositive, dNegative), posWeightSaved);
              grad = tf.add(grad, tf.reshape(tf.scatterND(indicesSaved, correction, [rows * classes]), [rows, classes]));
            }
            return tf.mul(grad, dy);
          }),
        ],
      };
  });
  return focal(logits) as tf.Scalar;
}

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
    const hardLabels = target.rank === 1 && pred.rank === 2 && target.dtype === 'int32';
    const rowWeights = options.weight === undefined || options.weight.rank === 1 ? options.weight : undefined;
    if (hardLabels && reduction !== 'none' && rowWeights === options.weight) {
      // Integer labels with per-row weights: the summed loss without one-hot targets.
      return tf.tidy(() => {
        const sum = sigmoidFocalLossSumHardLabels(
          pred as tf.Tensor2D,
          target.dataSync() as Int32Array,
          rowWeights === undefined ? undefined : (rowWeights.dataSync() as Float32Array),
          this.gamma,
          this.alpha,
        );
        let reduced: tf.Tensor = sum;
        if (options.avgFactor !== undefined) {
          if (reduction === 'sum') throw new RangeError('avgFactor cannot be used with reduction "sum". Use "mean" or leave avgFactor out');
          reduced = tf.div(sum, options.avgFactor + FLOAT32_EPS);
        } else if (reduction === 'mean') {
          reduced = tf.div(sum, pred.size);
        }
        return tf.mul(reduced, this.lossWeight);
      });
    }
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
