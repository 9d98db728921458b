import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../../config/config.ts';
import { LOSSES } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import { checkSameShape, commonLossOptions, resolveReduction, weightReduceLoss, type Loss, type LossForwardOptions, type Reduction } from './utils.ts';

/** Element-wise L1 loss `|pred - target|`. */
export function l1LossElementwise(pred: tf.Tensor, target: tf.Tensor): tf.Tensor {
  checkSameShape('l1Loss', pred, target);
  return tf.tidy(() => tf.abs(tf.sub(pred, target)));
}

/**
 * Element-wise smooth L1 loss with MMDetection's `beta`: `0.5 d^2 / beta` where d = |pred - target|
 * is below beta, else `d - 0.5 beta`.
 */
export function smoothL1LossElementwise(pred: tf.Tensor, target: tf.Tensor, beta = 1): tf.Tensor {
  if (!(beta > 0)) throw new RangeError(`smoothL1Loss: beta must be > 0, got ${beta}`);
  checkSameShape('smoothL1Loss', pred, target);
  return tf.tidy(() => {
    const diff = tf.abs(tf.sub(pred, target));
    return tf.where(tf.less(diff, beta), tf.div(tf.mul(tf.square(diff), 0.5), beta), tf.sub(diff, 0.5 * beta));
  });
}

/**
 * Reduces a regression loss as MMDetection's `weighted_loss` functions do, returning a 0 that
 * still depends on `pred` when there are no elements (an image without positives), where a
 * plain mean would give 0/0.
 */
function reduceRegressionLoss(
  pred: tf.Tensor,
  elementwise: () => tf.Tensor,
  reduction: Reduction,
  options: LossForwardOptions,
  lossWeight: number,
): tf.Tensor {
  return tf.tidy(() => {
    if (pred.size === 0 && reduction !== 'none') return tf.mul(tf.sum(pred), 0);
    return tf.mul(weightReduceLoss(elementwise(), options.weight, reduction, options.avgFactor), lossWeight);
  });
}

export interface L1LossOptions {
  reduction?: Reduction;
  lossWeight?: number;
}

export interface SmoothL1LossOptions extends L1LossOptions {
  /** Threshold on |pred - target| at which the loss turns from quadratic to linear (> 0, default 1). */
  beta?: number;
}

declare module '../../config/component_types.ts' {
  interface LossTypes {
    L1Loss: L1LossOptions;
    SmoothL1Loss: SmoothL1LossOptions;
  }
}

/** MMDetection 2.x `L1Loss`. */
export class L1Loss implements Loss {
  readonly reduction: Reduction;
  readonly lossWeight: number;

  constructor(options: L1LossOptions = {}, path = 'L1Loss') {
    checkOptionKeys(path, options, ['reduction', 'lossWeight']);
    ({ reduction: this.reduction, lossWeight: this.lossWeight } = commonLossOptions(path, options));
  }

  forward(pred: tf.Tensor, target: tf.Tensor, options: LossForwardOptions = {}): tf.Tensor {
    const reduction = resolveReduction(this.reduction, options.reductionOverride);
    return reduceRegressionLoss(pred, () => l1LossElementwise(pred, target), reduction, options, this.lossWeight);
  }
}

/** MMDetection 2.x `SmoothL1Loss`. */
export class SmoothL1Loss implements Loss {
  readonly beta: number;
  readonly reduction: Reduction;
  readonly lossWeight: number;

  constructor(options: SmoothL1LossOptions = {}, path = 'SmoothL1Loss') {
    checkOptionKeys(path, options, ['beta', 'reduction', 'lossWeight']);
    ({ reduction: this.reduction, lossWeight: this.lossWeight } = commonLossOptions(path, options));
    this.beta = options.beta ?? 1;
    if (!(this.beta > 0)) throw new ConfigError(`${path}: 'beta' must be > 0, got ${JSON.stringify(options.beta)}`);
  }

  forward(pred: tf.Tensor, target: tf.Tensor, options: LossForwardOptions = {}): tf.Tensor {
    const reduction = resolveReduction(this.reduction, options.reductionOverride);
    return reduceRegressionLoss(pred, () => smoothL1LossElementwise(pred, target, this.beta), reduction, options, this.lossWeight);
  }
}

LOSSES.register('L1Loss', (options: L1LossOptions, path) => new L1Loss(options, path));
LOSSES.register('SmoothL1Loss', (options: SmoothL1LossOptions, path) => new SmoothL1Loss(options, path));
