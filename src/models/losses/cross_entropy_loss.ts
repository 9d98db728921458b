import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../../config/config.ts';
import { LOSSES } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import {
  checkSameShape,
  commonLossOptions,
  labelsToOneHot,
  resolveReduction,
  stableBce,
  weightReduceLoss,
  type ClassificationLoss,
  type LossForwardOptions,
  type Reduction,
} from './utils.ts';

/**
 * Element-wise binary cross entropy with logits, as torch's
 * `binary_cross_entropy_with_logits(..., reduction='none')`:
 * `(1 - t) x + (1 + (posWeight - 1) t) * softplus(-x)`, which without `posWeight` equals
 * `max(x, 0) - x t + log1p(exp(-|x|))`. The closed-form gradient
 * `(1 - t) - (1 + (posWeight - 1) t) * sigmoid(-x)` is exact at x = 0 (autodiff through |x| and
 * max(x, 0) is not) and finite for any x. No gradient flows to the targets or `posWeight`.
 */
export function binaryCrossEntropyWithLogitsElementwise(logits: tf.Tensor, targets: tf.Tensor, posWeight?: tf.Tensor): tf.Tensor {
  checkSameShape('binaryCrossEntropyWithLogits', logits, targets);
  const bce = tf.customGrad((x, save) => {
    const logitsInput = x as tf.Tensor;
    (save as tf.GradSaveFunc)(posWeight === undefined ? [logitsInput, targets] : [logitsInput, targets, posWeight]);
    const value = tf.tidy(() => {
      if (posWeight === undefined) return stableBce(logitsInput, targets);
      const softplusNegX = tf.add(tf.relu(tf.neg(logitsInput)), tf.log1p(tf.exp(tf.neg(tf.abs(logitsInput)))));
      return tf.add(tf.mul(tf.sub(1, targets), logitsInput), tf.mul(logWeight(targets, posWeight), softplusNegX));
    });
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
        tf.tidy(() => {
          const [xs, ts, pw] = saved as [tf.Tensor, tf.Tensor, tf.Tensor | undefined];
          // Without posWeight, (1 - t) - sigmoid(-x) simplifies to sigmoid(x) - t.
          const gradient =
            pw === undefined ? tf.sub(tf.sigmoid(xs), ts) : tf.sub(tf.sub(1, ts), tf.mul(logWeight(ts, pw), tf.sigmoid(tf.neg(xs))));
          return tf.mul(dy, gradient);
        }),
      ],
    };
  });
  return bce(logits);
}

function logWeight(targets: tf.Tensor, posWeight: tf.Tensor): tf.Tensor {
  return tf.add(tf.mul(tf.sub(posWeight, 1), targets), 1);
}

/**
 * torch `binary_cross_entropy_with_logits(logits, targets, weight, pos_weight, reduction)`:
 * `weight` multiplies the element-wise loss (broadcast) and `posWeight` the positive term
 * (broadcast over the last axis). 'mean' averages over all elements.
 */
export function binaryCrossEntropyWithLogits(
  logits: tf.Tensor,
  targets: tf.Tensor,
  options: { weight?: tf.Tensor; posWeight?: tf.Tensor; reduction?: Reduction } = {},
): tf.Tensor {
  return tf.tidy(() => {
    const loss = binaryCrossEntropyWithLogitsElementwise(logits, targets, options.posWeight);
    return weightReduceLoss(loss, options.weight, resolveReduction('mean', options.reduction));
  });
}

export interface CrossEntropyOptions {
  /** Per-class weight `[C]`, as torch's `weight`. */
  classWeight?: tf.Tensor1D | readonly number[];
  /** Targets equal to this give 0 and leave the mean's denominator (default -100). */
  ignoreIndex?: number;
  /** Mixes the one-hot target with the uniform distribution: `(1 - e) onehot + e / C`. */
  labelSmoothing?: number;
  reduction?: Reduction;
}

/**
 * Softmax cross entropy of `logits` `[N, C]` against integer `target` `[N]`, with torch 1.13's
 * `F.cross_entropy` semantics. 'mean' divides by the number of non-ignored targets, or with
 * `classWeight` by the sum of their class weights. Label smoothing follows torch:
 * `(1 - e) * nll + (e / C) * (-sum_c w_c log p_c)`, with the same denominator for 'mean'.
 */
export function crossEntropy(logits: tf.Tensor2D, target: tf.Tensor | Int32Array, options: CrossEntropyOptions = {}): tf.Tensor {
  const [n, numClasses] = logits.shape;
  const ignoreIndex = options.ignoreIndex ?? -100;
  const smoothing = options.labelSmoothing ?? 0;
  if (!(smoothing >= 0 && smoothing <= 1)) throw new RangeError(`crossEntropy: labelSmoothing must be in [0, 1], got ${smoothing}`);
  const reduction = resolveReduction('mean', options.reduction);
  const labels = target instanceof tf.Tensor ? Int32Array.from(target.dataSync()) : target;
  if (labels.length !== n) throw new RangeError(`crossEntropy: ${labels.length} targets for ${n} rows of logits`);

  const classWeights = options.classWeight instanceof tf.Tensor ? options.classWeight.dataSync() : options.classWeight;
  if (classWeights !== undefined && classWeights.length !== numClasses) {
    throw new RangeError(`crossEntropy: classWeight has ${classWeights.length} values for ${numClasses} classes`);
  }
  // The denominator of 'mean': count (or class-weight sum) of the non-ignored targets.
  let denominator = 0;
  const valid = new Float32Array(n);
  labels.forEach((label, i) => {
    if (label === ignoreIndex) return;
    if (!(Number.isInteger(label) && label >= 0 && label < numClasses)) {
      throw new RangeError(`crossEntropy: target[${i}] = ${label} is not a class in [0, ${numClasses}) nor ignoreIndex ${ignoreIndex}`);
    }
    valid[i] = 1;
    denominator += classWeights === undefined ? 1 : classWeights[label]!;
  });

  return tf.tidy(() => {
    const logProbabilities = tf.logSoftmax(logits);
    const weightRow = classWeights === undefined ? undefined : tf.tensor2d([...classWeights], [1, numClasses]);
    const weighted = weightRow === undefined ? logProbabilities : tf.mul(logProbabilities, weightRow);
    // An ignored target has no one-hot entry, so its row contributes 0.
    const oneHot = labelsToOneHot(tf.tensor1d(Array.from(labels, (label) => (label === ignoreIndex ? -1 : label)), 'int32'), numClasses);
    let loss: tf.Tensor = tf.neg(tf.sum(tf.mul(weighted, oneHot), 1));
    if (smoothing > 0) {
      const smooth = tf.mul(tf.neg(tf.sum(weighted, 1)), tf.tensor1d(valid));
      loss = tf.add(tf.mul(loss, 1 - smoothing), tf.mul(smooth, smoothing / numClasses));
    }
    if (reduction === 'none') return loss;
    const total = tf.sum(loss);
    return reduction === 'sum' ? total : tf.div(total, denominator);
  });
}

export interface CrossEntropyLossOptions {
  /** Sigmoid (binary, per class) instead of softmax cross entropy (default false). */
  useSigmoid?: boolean;
  /** Per-class weight: torch's `weight` for softmax, `pos_weight` for sigmoid. */
  classWeight?: readonly number[];
  /** Label to ignore (default -100). */
  ignoreIndex?: number;
  /** For 'mean' without avgFactor, divide by the number of non-ignored labels instead of all. */
  avgNonIgnore?: boolean;
  reduction?: Reduction;
  lossWeight?: number;
}

declare module '../../config/component_types.ts' {
  interface LossTypes {
    CrossEntropyLoss: CrossEntropyLossOptions;
  }
}

const OPTION_KEYS = ['useSigmoid', 'classWeight', 'ignoreIndex', 'avgNonIgnore', 'reduction', 'lossWeight'] as const;

/**
 * MMDetection 2.x `CrossEntropyLoss`. The element-wise loss (class weights applied, ignored
 * labels 0) goes through `weightReduceLoss`, so 'mean' without `avgFactor` divides by every
 * element, ignored ones included, unless `avgNonIgnore` is set. Unlike torch's `cross_entropy`,
 * the class weights never enter the denominator.
 * With `useSigmoid`, integer labels `[N]` against logits `[N, C]` become one-hot rows (label C
 * is an all-zero row) and ignored labels get weight 0. Float targets of the logits' shape are
 * used as they are.
 */
export class CrossEntropyLoss implements ClassificationLoss {
  readonly useSigmoid: boolean;
  readonly classWeight: readonly number[] | undefined;
  readonly ignoreIndex: number;
  readonly avgNonIgnore: boolean;
  readonly reduction: Reduction;
  readonly lossWeight: number;

  constructor(options: CrossEntropyLossOptions = {}, path = 'CrossEntropyLoss') {
    checkOptionKeys(path, options, OPTION_KEYS);
    ({ reduction: this.reduction, lossWeight: this.lossWeight } = commonLossOptions(path, options));
    this.useSigmoid = options.useSigmoid ?? false;
    this.classWeight = options.classWeight === undefined ? undefined : [...options.classWeight];
    if (this.classWeight !== undefined && this.classWeight.some((w) => typeof w !== 'number' || !Number.isFinite(w))) {
      throw new ConfigError(`${path}: 'classWeight' must be a list of finite numbers, got ${JSON.stringify(options.classWeight)}`);
    }
    this.ignoreIndex = options.ignoreIndex ?? -100;
    this.avgNonIgnore = options.avgNonIgnore ?? false;
  }

  forward(pred: tf.Tensor, target: tf.Tensor, options: LossForwardOptions = {}): tf.Tensor {
    const reduction = resolveReduction(this.reduction, options.reductionOverride);
    return tf.tidy(() => {
      const { loss, weight, numValid } = this.useSigmoid ? this.sigmoidLoss(pred, target, options.weight) : this.softmaxLoss(pred, target, options.weight);
      let avgFactor = options.avgFactor;
      if (avgFactor === undefined && this.avgNonIgnore && reduction === 'mean') avgFactor = numValid;
      return tf.mul(weightReduceLoss(loss, weight, reduction, avgFactor), this.lossWeight);
    });
  }

  private softmaxLoss(pred: tf.Tensor, target: tf.Tensor, weight: tf.Tensor | undefined) {
    if (pred.rank !== 2) throw new RangeError(`CrossEntropyLoss: softmax predictions must be [N, C], got shape [${pred.shape}]`);
    const labels = Int32Array.from(target.dataSync());
    const options: CrossEntropyOptions = { ignoreIndex: this.ignoreIndex, reduction: 'none' };
    if (this.classWeight !== undefined) options.classWeight = this.classWeight;
    const loss = crossEntropy(pred as tf.Tensor2D, labels, options);
    const numValid = labels.reduce((count, label) => count + (label === this.ignoreIndex ? 0 : 1), 0);
    return { loss, weight, numValid };
  }

  private sigmoidLoss(pred: tf.Tensor, target: tf.Tensor, weight: tf.Tensor | undefined) {
    let targets: tf.Tensor;
    let validMask: tf.Tensor;
    if (target.rank === pred.rank - 1) {
      // Integer labels become one-hot rows. Labels < 0 or equal to ignoreIndex are masked out.
      const numClasses = pred.shape[pred.rank - 1]!;
      const labels = tf.cast(target, 'int32');
      const valid = tf.logicalAnd(tf.greaterEqual(labels, 0), tf.notEqual(labels, this.ignoreIndex));
      targets = labelsToOneHot(tf.where(valid, labels, tf.fill(labels.shape, -1, 'int32')), numClasses);
      validMask = tf.mul(tf.expandDims(tf.cast(valid, 'float32'), -1), tf.onesLike(pred));
      if (weight !== undefined && weight.rank === pred.rank - 1) weight = tf.expandDims(weight, -1);
    } else {
      checkSameShape('CrossEntropyLoss', pred, target);
      targets = tf.cast(target, 'float32');
      validMask = tf.cast(tf.logicalAnd(tf.greaterEqual(targets, 0), tf.notEqual(targets, this.ignoreIndex)), 'float32');
    }
    const combinedWeight = weight === undefined ? validMask : tf.mul(weight, validMask);
    const posWeight = this.classWeight === undefined ? undefined : tf.tensor1d([...this.classWeight]);
    const loss = binaryCrossEntropyWithLogitsElementwise(pred, targets, posWeight);
    return { loss, weight: combinedWeight, numValid: tf.sum(validMask).dataSync()[0]! };
  }
}

LOSSES.register('CrossEntropyLoss', (options: CrossEntropyLossOptions, path) => new CrossEntropyLoss(options, path));
