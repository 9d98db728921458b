import * as tf from '@tensorflow/tfjs-core';

import { kaimingNormal, torchDefaultUniform } from './init.ts';
import { Module } from './module.ts';
import { batchNormTraining, groupNorm } from './normalization.ts';

/**
 * Basic layers on NHWC tensors. Padding is explicit and symmetric as in PyTorch (a 3x3
 * stride-2 convolution with padding 1 pads one pixel on every side), not TensorFlow's
 * 'same', which pads more at the bottom and right; this keeps outputs equal to PyTorch's.
 */

/**
 * Callback that Conv2d, Linear, BatchNorm2d and GroupNorm call on every forward while one is
 * installed. `count` is the multiply-adds of the call for 'conv' and 'linear', and the number
 * of normalised elements for 'norm'. src/analysis/complexity.ts installs one to count a model.
 */
export type LayerCallObserver = (layer: Module, kind: 'conv' | 'linear' | 'norm', count: number) => void;

let layerCallObserver: LayerCallObserver | undefined;

/** Installs `observer` (undefined removes it) and returns the observer it replaces. */
export function setLayerCallObserver(observer: LayerCallObserver | undefined): LayerCallObserver | undefined {
  const previous = layerCallObserver;
  layerCallObserver = observer;
  return previous;
}

export interface Conv2dOptions {
  inChannels: number;
  outChannels: number;
  kernelSize: number;
  stride?: number;
  padding?: number;
  dilation?: number;
  bias?: boolean;
  /** Weight initialiser; defaults to Kaiming normal (fan_out), the ResNet convention. */
  init?: (shape: readonly number[]) => tf.Tensor;
  /** Bias initialiser; defaults to PyTorch's uniform(-1/sqrt(fanIn), 1/sqrt(fanIn)). */
  biasInit?: (shape: readonly number[]) => tf.Tensor;
}

export class Conv2d extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | undefined;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: number;
  readonly stride: number;
  readonly padding: number;
  readonly dilation: number;

  constructor(options: Conv2dOptions) {
    super();
    this.inChannels = options.inChannels;
    this.outChannels = options.outChannels;
    this.kernelSize = options.kernelSize;
    this.stride = options.stride ?? 1;
    this.padding = options.padding ?? 0;
    this.dilation = options.dilation ?? 1;
    const shape = [this.kernelSize, this.kernelSize, this.inChannels, this.outChannels];
    this.weight = this.addParameter('weight', (options.init ?? ((s) => kaimingNormal(s, 'fanOut')))(shape));
    if (options.bias ?? false) {
      const fanIn = this.inChannels * this.kernelSize * this.kernelSize;
      const biasInit = options.biasInit ?? ((s: readonly number[]) => torchDefaultUniform(s, fanIn));
      this.bias = this.addParameter('bias', biasInit([this.outChannels]));
    }
  }

  /** Applies the convolution to x `[N, H, W, inChannels]`, returning `[N, H', W', outChannels]`. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    layerCallObserver?.(this, 'conv', x.shape[0] * this.multiplyAdds(x.shape[1], x.shape[2]));
    return tf.tidy(() => {
      const y = tf.conv2d(x, this.weight as tf.Tensor4D, this.stride, this.padding, 'NHWC', this.dilation);
      return this.bias === undefined ? y : tf.add(y, this.bias);
    });
  }

  /** Multiply-adds of one forward pass on an input of the given spatial size (batch 1). */
  multiplyAdds(inputHeight: number, inputWidth: number): number {
    const [h, w] = this.outputSize(inputHeight, inputWidth);
    return h * w * this.outChannels * this.inChannels * this.kernelSize * this.kernelSize;
  }

  outputSize(inputHeight: number, inputWidth: number): [number, number] {
    const effective = this.dilation * (this.kernelSize - 1) + 1;
    const out = (size: number) => Math.floor((size + 2 * this.padding - effective) / this.stride) + 1;
    return [out(inputHeight), out(inputWidth)];
  }
}

export interface BatchNorm2dOptions {
  eps?: number;
  /** Running-statistics update rate, PyTorch's convention: new = (1 - m) * old + m * batch. */
  momentum?: number;
  /** Initial scale; ResNet zero-initialises the last BN of each residual block. */
  weightInit?: number;
}

/**
 * Batch normalisation over N, H and W, with PyTorch semantics: training uses the batch mean
 * and biased variance and updates the running variance with the unbiased one; inference
 * (or `normEval`) uses the running statistics.
 */
export class BatchNorm2d extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;
  readonly runningMean: tf.Variable;
  readonly runningVar: tf.Variable;
  readonly eps: number;
  readonly momentum: number;
  /** When set, normalise with the running statistics even in training mode (MMDetection's norm_eval). */
  useRunningStats = false;

  constructor(
    readonly numFeatures: number,
    options: BatchNorm2dOptions = {},
  ) {
    super();
    this.eps = options.eps ?? 1e-5;
    this.momentum = options.momentum ?? 0.1;
    this.weight = this.addParameter('weight', tf.fill([numFeatures], options.weightInit ?? 1));
    this.bias = this.addParameter('bias', tf.zeros([numFeatures]));
    this.runningMean = this.addBuffer('running_mean', tf.zeros([numFeatures]));
    this.runningVar = this.addBuffer('running_var', tf.ones([numFeatures]));
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    layerCallObserver?.(this, 'norm', x.size);
    if (!this.training || this.useRunningStats) {
      return tf.batchNorm4d(x, this.runningMean as tf.Tensor1D, this.runningVar as tf.Tensor1D, this.bias as tf.Tensor1D, this.weight as tf.Tensor1D, this.eps);
    }
    return this.forwardTraining(x);
  }

  /** Normalises x with its batch statistics and updates the running statistics. */
  protected forwardTraining(x: tf.Tensor4D): tf.Tensor4D {
    const { output, mean, variance, count } = batchNormTraining(x, this.weight as tf.Tensor1D, this.bias as tf.Tensor1D, this.eps);
    this.updateRunningStats(mean, variance, count);
    tf.dispose([mean, variance]);
    return output;
  }

  protected updateRunningStats(mean: tf.Tensor1D, variance: tf.Tensor1D, count: number): void {
    // The new statistics do not feed the loss, so backpropagation never visits these ops.
    const unbiased = count > 1 ? count / (count - 1) : 1;
    const m = this.momentum;
    const newMean = tf.tidy(() => tf.add(tf.mul(this.runningMean, 1 - m), tf.mul(mean, m)));
    const newVar = tf.tidy(() => tf.add(tf.mul(this.runningVar, 1 - m), tf.mul(variance, m * unbiased)));
    this.runningMean.assign(newMean);
    this.runningVar.assign(newVar);
  }
}

export interface LinearOptions {
  inFeatures: number;
  outFeatures: number;
  bias?: boolean;
}

/** Fully connected layer; the weight is [inFeatures, outFeatures] (PyTorch stores its transpose). */
export class Linear extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | undefined;

  constructor(readonly options: LinearOptions) {
    super();
    const { inFeatures, outFeatures } = options;
    this.weight = this.addParameter('weight', torchDefaultUniform([inFeatures, outFeatures], inFeatures));
    if (options.bias ?? true) this.bias = this.addParameter('bias', torchDefaultUniform([outFeatures], inFeatures));
  }

  forward(x: tf.Tensor2D): tf.Tensor2D {
    layerCallObserver?.(this, 'linear', x.shape[0] * this.options.inFeatures * this.options.outFeatures);
    return tf.tidy((): tf.Tensor2D => {
      const y = tf.matMul(x, this.weight as tf.Tensor2D) as tf.Tensor2D;
      return this.bias === undefined ? y : (tf.add(y, this.bias) as tf.Tensor2D);
    });
  }
}

/**
 * Group normalisation (Wu and He, 2018) over groups of channels, with a learned per-channel
 * scale and shift. It does not depend on the batch, so it suits training from scratch with
 * one or two images per batch.
 */
export class GroupNorm extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;

  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    readonly eps = 1e-5,
  ) {
    super();
    if (numChannels % numGroups !== 0) {
      throw new Error(`GroupNorm: numChannels ${numChannels} is not divisible by numGroups ${numGroups}`);
    }
    this.weight = this.addParameter('weight', tf.ones([numChannels]));
    this.bias = this.addParameter('bias', tf.zeros([numChannels]));
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    layerCallObserver?.(this, 'norm', x.size);
    return groupNorm(x, this.numGroups, this.weight as tf.Tensor1D, this.bias as tf.Tensor1D, this.eps);
  }
}

/** Max pooling with PyTorch's symmetric padding (padded cells never win). */
export function maxPool2d(x: tf.Tensor4D, kernelSize: number, stride: number, padding: number): tf.Tensor4D {
  return tf.maxPool(x, kernelSize, stride, padding);
}
