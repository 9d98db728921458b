import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../../config/config.ts';
import { xavierUniform } from '../../nn/init.ts';
import { Conv2d } from '../../nn/layers.ts';
import { Module, ModuleList } from '../../nn/module.ts';
import { NECKS } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import { buildNorm, normLayerPrefix, resolveNorm, type NormLayer, type NormOptions, type NormType, type ResolvedNorm } from '../norm.ts';
import type { Neck } from '../types.ts';

export type ExtraConvsSource = 'on_input' | 'on_lateral' | 'on_output';

export interface FPNOptions {
  /** Channels of each backbone output, finest first. */
  inChannels: number[];
  /** Channels of every pyramid level (256 in MMDetection's configs). */
  outChannels: number;
  /** Pyramid levels returned. Levels beyond the backbone's come from max pooling or extra convs. */
  numOuts: number;
  /** First backbone output used; default 0. MMDetection's RetinaNet configs use 1, so P3 comes from C3. */
  startLevel?: number;
  /** Last backbone output used, inclusive; default -1 (the last one). */
  endLevel?: number;
  /**
   * Extra levels from stride-2 3x3 convs instead of max pooling, and what the first one reads:
   * the last used backbone output ('on_input', also what `true` means), its lateral
   * ('on_lateral') or its pyramid output ('on_output'). Default false.
   */
  addExtraConvs?: boolean | ExtraConvsSource;
  /** Apply ReLU before every extra conv after the first; default false. */
  reluBeforeExtraConvs?: boolean;
  /** Leave the lateral 1x1 convs without norm even when `norm` is set; default false. */
  noNormOnLateral?: boolean;
  /** Norm after each conv; default none (convs then have a bias). */
  norm?: NormType | NormOptions;
}

declare module '../../config/component_types.ts' {
  interface NeckTypes {
    FPN: FPNOptions;
  }
}

const OPTION_KEYS = [
  'inChannels',
  'outChannels',
  'numOuts',
  'startLevel',
  'endLevel',
  'addExtraConvs',
  'reluBeforeExtraConvs',
  'noNormOnLateral',
  'norm',
] as const;

/**
 * Convolution followed by an optional norm layer, named `conv` and `bn` / `gn` like mmcv's
 * ConvModule. The convolution has a bias only without norm, and is Xavier-uniform initialised
 * with a zero bias, as MMDetection initialises FPN.
 */
export class ConvModule extends Module {
  readonly conv: Conv2d;
  readonly norm: NormLayer | undefined;

  constructor(
    options: { inChannels: number; outChannels: number; kernelSize: number; stride?: number; padding?: number },
    norm: ResolvedNorm | undefined,
    path: string,
  ) {
    super();
    this.conv = this.addModule(
      'conv',
      new Conv2d({ ...options, bias: norm === undefined, init: (shape) => xavierUniform(shape), biasInit: (shape) => tf.zeros([...shape]) }),
    );
    if (norm !== undefined) {
      this.norm = this.addModule(normLayerPrefix(norm), buildNorm(norm, options.outChannels, path));
      if (!norm.requiresGrad) this.norm.freeze();
    }
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const y = this.conv.forward(x);
      return this.norm === undefined ? y : this.norm.forward(y);
    });
  }
}

/**
 * Feature Pyramid Network (Lin et al., 2017) as MMDetection 2.x's FPN. A 1x1 lateral conv
 * reads each backbone output from startLevel to endLevel. The top-down pathway adds each
 * coarser lateral to the next finer one, upsampled by nearest-neighbour interpolation to its
 * exact size, and a 3x3 conv then makes each level. Levels beyond the backbone's come from a
 * 1x1 max pool with stride 2 (PyTorch's `F.max_pool2d(x, 1, stride=2)`, which keeps every
 * second pixel) or, with `addExtraConvs`, from stride-2 3x3 convs.
 *
 * Parameter names follow MMDetection: `lateral_convs.0.conv.weight`, `fpn_convs.4.conv.bias`.
 * The extra convs are `fpn_convs[usedLevels]` onwards.
 */
export class FPN extends Module implements Neck {
  readonly outChannels: number;
  readonly numOutputs: number;
  readonly inChannels: readonly number[];
  readonly startLevel: number;
  /** One past the last backbone output used. */
  readonly backboneEndLevel: number;
  readonly addExtraConvs: ExtraConvsSource | false;
  readonly reluBeforeExtraConvs: boolean;
  readonly lateralConvs: ModuleList<ConvModule>;
  readonly fpnConvs: ModuleList<ConvModule>;

  constructor(
    options: FPNOptions,
    private readonly path = 'model.neck',
  ) {
    super();
    checkOptionKeys(path, options, OPTION_KEYS);
    const { inChannels, outChannels, numOuts } = options;
    if (!Array.isArray(inChannels) || inChannels.length === 0 || !inChannels.every((c) => Number.isInteger(c) && c > 0)) {
      throw new ConfigError(`${path}.inChannels: expected a list of positive integers, got ${JSON.stringify(inChannels)}`);
    }
    if (!Number.isInteger(outChannels) || outChannels < 1) {
      throw new ConfigError(`${path}.outChannels: expected a positive integer, got ${JSON.stringify(outChannels)}`);
    }
    if (!Number.isInteger(numOuts) || numOuts < 1) {
      throw new ConfigError(`${path}.numOuts: expected a positive integer, got ${JSON.stringify(numOuts)}`);
    }
    this.inChannels = [...inChannels];
    this.outChannels = outChannels;
    this.numOutputs = numOuts;
    this.startLevel = options.startLevel ?? 0;
    this.backboneEndLevel = resolveEndLevel(options, path);
    this.addExtraConvs = resolveExtraConvs(options.addExtraConvs, path);
    this.reluBeforeExtraConvs = options.reluBeforeExtraConvs ?? false;
    const norm = options.norm === undefined ? undefined : resolveNorm(options.norm, path);
    const lateralNorm = (options.noNormOnLateral ?? false) ? undefined : norm;

    this.lateralConvs = this.addModule('lateral_convs', new ModuleList<ConvModule>());
    this.fpnConvs = this.addModule('fpn_convs', new ModuleList<ConvModule>());
    for (let i = this.startLevel; i < this.backboneEndLevel; i++) {
      this.lateralConvs.push(new ConvModule({ inChannels: inChannels[i]!, outChannels, kernelSize: 1 }, lateralNorm, path));
      this.fpnConvs.push(new ConvModule({ inChannels: outChannels, outChannels, kernelSize: 3, padding: 1 }, norm, path));
    }

    const extraLevels = numOuts - (this.backboneEndLevel - this.startLevel);
    if (this.addExtraConvs !== false) {
      for (let i = 0; i < extraLevels; i++) {
        const extraInChannels = i === 0 && this.addExtraConvs === 'on_input' ? inChannels[this.backboneEndLevel - 1]! : outChannels;
        this.fpnConvs.push(new ConvModule({ inChannels: extraInChannels, outChannels, kernelSize: 3, stride: 2, padding: 1 }, norm, path));
      }
    }
  }

  /** Maps the backbone outputs (finest first) to `numOuts` pyramid levels; the caller disposes them. */
  forward(features: tf.Tensor4D[]): tf.Tensor4D[] {
    this.checkInputs(features);
    return tf.tidy(() => {
      const laterals = this.lateralConvs.items.map((conv, i) => conv.forward(features[i + this.startLevel]!));

      // Top-down: add each coarser lateral, upsampled to the finer one's exact size (odd sizes included).
      for (let i = laterals.length - 1; i > 0; i--) {
        const [, height, width] = laterals[i - 1]!.shape;
        const upsampled = tf.image.resizeNearestNeighbor(laterals[i]!, [height, width]);
        laterals[i - 1] = tf.add(laterals[i - 1]!, upsampled);
      }

      const usedLevels = laterals.length;
      const outputs = laterals.map((lateral, i) => this.fpnConvs.at(i).forward(lateral));
      if (this.numOutputs <= usedLevels) return outputs;

      if (this.addExtraConvs === false) {
        while (outputs.length < this.numOutputs) outputs.push(tf.maxPool(outputs[outputs.length - 1]!, 1, 2, 'valid'));
        return outputs;
      }
      const sources = {
        on_input: features[this.backboneEndLevel - 1]!,
        on_lateral: laterals[usedLevels - 1]!,
        on_output: outputs[usedLevels - 1]!,
      };
      outputs.push(this.fpnConvs.at(usedLevels).forward(sources[this.addExtraConvs]));
      for (let i = usedLevels + 1; i < this.numOutputs; i++) {
        const previous = outputs[outputs.length - 1]!;
        outputs.push(this.fpnConvs.at(i).forward(this.reluBeforeExtraConvs ? tf.relu(previous) : previous));
      }
      return outputs;
    });
  }

  private checkInputs(features: tf.Tensor4D[]): void {
    if (features.length !== this.inChannels.length) {
      throw new Error(`${this.path}: expected ${this.inChannels.length} feature maps (inChannels ${JSON.stringify(this.inChannels)}), got ${features.length}`);
    }
    features.forEach((feature, i) => {
      if (feature.rank !== 4 || feature.shape[3] !== this.inChannels[i]) {
        throw new Error(`${this.path}: feature map ${i} should be [N, H, W, ${this.inChannels[i]}], got [${feature.shape.join(', ')}]`);
      }
    });
  }
}

/** Returns one past the last backbone output used, checking MMDetection 2.x's rules for numOuts. */
function resolveEndLevel(options: FPNOptions, path: string): number {
  const numInputs = options.inChannels.length;
  const startLevel = options.startLevel ?? 0;
  const endLevel = options.endLevel ?? -1;
  if (!Number.isInteger(startLevel) || startLevel < 0 || startLevel >= numInputs) {
    throw new ConfigError(`${path}.startLevel: expected an integer from 0 to ${numInputs - 1}, got ${JSON.stringify(startLevel)}`);
  }
  if (endLevel === -1 || endLevel === numInputs - 1) {
    if (options.numOuts < numInputs - startLevel) {
      throw new ConfigError(`${path}.numOuts: must be at least the ${numInputs - startLevel} backbone levels from startLevel ${startLevel}, got ${options.numOuts}`);
    }
    return numInputs;
  }
  // An end level before the last backbone output allows no extra levels.
  if (!Number.isInteger(endLevel) || endLevel < startLevel || endLevel >= numInputs) {
    throw new ConfigError(`${path}.endLevel: expected -1 or an integer from ${startLevel} to ${numInputs - 1}, got ${JSON.stringify(endLevel)}`);
  }
  if (options.numOuts !== endLevel - startLevel + 1) {
    throw new ConfigError(
      `${path}.numOuts: must equal the ${endLevel - startLevel + 1} levels from startLevel ${startLevel} to endLevel ${endLevel}, got ${options.numOuts}`,
    );
  }
  return endLevel + 1;
}

function resolveExtraConvs(value: FPNOptions['addExtraConvs'], path: string): ExtraConvsSource | false {
  if (value === undefined || value === false) return false;
  if (value === true) return 'on_input';
  if (value === 'on_input' || value === 'on_lateral' || value === 'on_output') return value;
  throw new ConfigError(`${path}.addExtraConvs: expected false, true, 'on_input', 'on_lateral' or 'on_output', got ${JSON.stringify(value)}`);
}

NECKS.register('FPN', (options: FPNOptions, path: string) => new FPN(options, path));
