import * as tf from '@tensorflow/tfjs-core';

import { BatchNorm2d, Conv2d, GroupNorm, maxPool2d } from '../../nn/layers.ts';
import { Module } from '../../nn/module.ts';
import { ConfigError } from '../../utils/errors.ts';
import { resolveInitConfig, type ConfigurableInit, type InitConfig } from '../init_config.ts';
import { buildNorm, resolveNorm, type NormLayer, type NormOptions, type NormType, type ResolvedNorm } from '../norm.ts';
import type { Backbone } from '../types.ts';

/**
 * Pieces shared by ResNet and RLAResNet: option parsing, the bottleneck block, the stem, and
 * the frozen-stage and norm_eval handling of MMDetection 2.x's ResNet.
 */

/** Options of ResNet and RLAResNet. */
export interface ResNetCommonOptions {
  /** 50, 101 or 152; selects the blocks per stage unless `stageBlocks` is given. */
  depth?: 50 | 101 | 152;
  /** Bottleneck blocks per stage, e.g. [1, 1, 1, 1] for a test model; overrides `depth`. */
  stageBlocks?: number[];
  /** Stages to build, 1 to 4; default 4. */
  numStages?: number;
  /** Stages whose output is returned, ascending; default [0, 1, 2, 3]. */
  outIndices?: number[];
  /**
   * Stages whose parameters are frozen and whose norm layers run in inference mode: -1 none,
   * 0 the stem, 1 the stem and stage 1, and so on. Default -1.
   */
  frozenStages?: number;
  /** Normalise with the running statistics even while training; scale and shift still train. Default true. */
  normEval?: boolean;
  /** 'BN' (default), 'SyncBN' or 'GN', or a norm config object. */
  norm?: NormType | NormOptions;
  /** Zero-initialise the last norm layer of each block, so that each block starts as an identity. Default true. */
  zeroInitResidual?: boolean;
  /** Bottleneck width per group: inner width = floor(planes * widthPerGroup / 64) * groups. Default 64. */
  widthPerGroup?: number;
  /** Groups of the 3x3 convolution. Only 1 is supported. */
  groups?: number;
  /** Planes of stage 1; stage i has baseChannels * 2^i planes and 4 times as many output channels. Default 64. */
  baseChannels?: number;
  /** Output channels of the stem convolution; default `baseChannels`. */
  stemChannels?: number;
  /** Input image channels; default 3. */
  inChannels?: number;
  /** Only 'pytorch' (stride on the 3x3 convolution) is supported. */
  style?: 'pytorch';
  /** Pretrained weights to load after the model is built: `{type: 'Pretrained', checkpoint, prefix?}`. */
  init?: InitConfig;
}

export const RESNET_COMMON_OPTION_KEYS = [
  'depth',
  'stageBlocks',
  'numStages',
  'outIndices',
  'frozenStages',
  'normEval',
  'norm',
  'zeroInitResidual',
  'widthPerGroup',
  'groups',
  'baseChannels',
  'stemChannels',
  'inChannels',
  'style',
  'init',
] as const;

/** Bottleneck blocks per stage of each depth (He et al., 2016). */
export const STAGE_BLOCKS_BY_DEPTH: Readonly<Record<number, readonly number[]>> = {
  50: [3, 4, 6, 3],
  101: [3, 4, 23, 3],
  152: [3, 8, 36, 3],
};

export const BOTTLENECK_EXPANSION = 4;

/** Validated ResNet settings with every default applied. */
export interface ResNetSettings {
  stageBlocks: number[];
  outIndices: number[];
  frozenStages: number;
  normEval: boolean;
  norm: ResolvedNorm;
  zeroInitResidual: boolean;
  inChannels: number;
  stemChannels: number;
  /** Per stage: planes, bottleneck width, output channels and stride of the first block. */
  stages: Array<{ planes: number; width: number; outChannels: number; stride: number }>;
  init: InitConfig | undefined;
}

function isPositiveInteger(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) > 0;
}

function requirePositiveInteger(path: string, name: string, value: unknown): number {
  if (!isPositiveInteger(value)) throw new ConfigError(`${path}.${name}: expected a positive integer, got ${JSON.stringify(value)}`);
  return value;
}

/** Validates the common options and applies their defaults. `path` names the config in errors. */
export function resolveResNetSettings(options: ResNetCommonOptions, path: string): ResNetSettings {
  let stageBlocks: number[];
  if (options.stageBlocks !== undefined) {
    if (!Array.isArray(options.stageBlocks) || options.stageBlocks.length === 0 || !options.stageBlocks.every(isPositiveInteger)) {
      throw new ConfigError(`${path}.stageBlocks: expected a list of positive integers, got ${JSON.stringify(options.stageBlocks)}`);
    }
    stageBlocks = [...options.stageBlocks];
  } else {
    const blocks = options.depth === undefined ? undefined : STAGE_BLOCKS_BY_DEPTH[options.depth];
    if (blocks === undefined) {
      throw new ConfigError(
        `${path}.depth: expected one of ${Object.keys(STAGE_BLOCKS_BY_DEPTH).join(', ')} (or give stageBlocks), got ${JSON.stringify(options.depth)}`,
      );
    }
    stageBlocks = [...blocks];
  }

  const numStages = options.numStages ?? 4;
  if (!Number.isInteger(numStages) || numStages < 1 || numStages > 4 || numStages > stageBlocks.length) {
    throw new ConfigError(`${path}.numStages: expected an integer from 1 to ${Math.min(4, stageBlocks.length)}, got ${JSON.stringify(numStages)}`);
  }
  stageBlocks = stageBlocks.slice(0, numStages);

  const outIndices = options.outIndices ?? [0, 1, 2, 3].slice(0, numStages);
  const validOutIndices =
    Array.isArray(outIndices) &&
    outIndices.length > 0 &&
    outIndices.every((index, i) => Number.isInteger(index) && index >= 0 && index < numStages && (i === 0 || index > outIndices[i - 1]!));
  if (!validOutIndices) {
    throw new ConfigError(`${path}.outIndices: expected ascending stage indices in [0, ${numStages - 1}], got ${JSON.stringify(outIndices)}`);
  }

  const frozenStages = options.frozenStages ?? -1;
  if (!Number.isInteger(frozenStages) || frozenStages < -1 || frozenStages > numStages) {
    throw new ConfigError(`${path}.frozenStages: expected an integer from -1 to ${numStages}, got ${JSON.stringify(frozenStages)}`);
  }

  const groups = options.groups ?? 1;
  if (groups !== 1) {
    throw new ConfigError(`${path}.groups: only 1 is supported (grouped convolutions, as in ResNeXt, are not implemented), got ${JSON.stringify(groups)}`);
  }
  const style = options.style ?? 'pytorch';
  if (style !== 'pytorch') {
    throw new ConfigError(`${path}.style: only 'pytorch' (stride on the 3x3 convolution) is supported, got ${JSON.stringify(style)}`);
  }

  const widthPerGroup = requirePositiveInteger(path, 'widthPerGroup', options.widthPerGroup ?? 64);
  const baseChannels = requirePositiveInteger(path, 'baseChannels', options.baseChannels ?? 64);
  const stemChannels = requirePositiveInteger(path, 'stemChannels', options.stemChannels ?? baseChannels);
  const inChannels = requirePositiveInteger(path, 'inChannels', options.inChannels ?? 3);

  const stages = stageBlocks.map((_, i) => {
    const planes = baseChannels * 2 ** i;
    const width = Math.floor((planes * widthPerGroup) / 64) * groups;
    if (width < 1) throw new ConfigError(`${path}.widthPerGroup: ${widthPerGroup} gives stage ${i + 1} a bottleneck width of 0`);
    return { planes, width, outChannels: planes * BOTTLENECK_EXPANSION, stride: i === 0 ? 1 : 2 };
  });

  return {
    stageBlocks,
    outIndices: [...outIndices],
    frozenStages,
    normEval: options.normEval ?? true,
    norm: resolveNorm(options.norm, path),
    zeroInitResidual: options.zeroInitResidual ?? true,
    inChannels,
    stemChannels,
    stages,
    init: resolveInitConfig(path, options.init),
  };
}

/** 1x1 strided convolution and norm on the shortcut, named '0' and '1' like `nn.Sequential`. */
export class Downsample extends Module {
  readonly conv: Conv2d;
  readonly norm: NormLayer;

  constructor(inChannels: number, outChannels: number, stride: number, norm: ResolvedNorm, path: string) {
    super();
    this.conv = this.addModule('0', new Conv2d({ inChannels, outChannels, kernelSize: 1, stride }));
    this.norm = this.addModule('1', buildNorm(norm, outChannels, path));
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.norm.forward(this.conv.forward(x)));
  }
}

export interface BottleneckOptions {
  inChannels: number;
  width: number;
  outChannels: number;
  stride: number;
  norm: ResolvedNorm;
  zeroInitResidual: boolean;
  /** Channels concatenated to the input of conv1 (the RLA state); 0 for a plain ResNet. */
  extraInputChannels?: number;
  /** Prefix of the norm layer names: 'bn' gives bn1..bn3, 'gn' gives gn1..gn3. */
  normPrefix: 'bn' | 'gn';
  /** Config path of the backbone, for error messages. */
  path: string;
}

/**
 * ResNet bottleneck: 1x1 conv (to `width`), 3x3 conv with the block's stride, 1x1 conv (to
 * `outChannels`), each followed by a norm layer, with ReLU after the first two and after
 * the residual sum. The shortcut gets a 1x1 conv + norm when the stride or channels change.
 */
export class Bottleneck extends Module {
  readonly conv1: Conv2d;
  readonly norm1: NormLayer;
  readonly conv2: Conv2d;
  readonly norm2: NormLayer;
  readonly conv3: Conv2d;
  readonly norm3: NormLayer;
  readonly downsample: Downsample | undefined;
  readonly stride: number;

  constructor(options: BottleneckOptions) {
    super();
    const { inChannels, width, outChannels, stride, norm, normPrefix, path } = options;
    this.stride = stride;
    const conv1InChannels = inChannels + (options.extraInputChannels ?? 0);
    this.conv1 = this.addModule('conv1', new Conv2d({ inChannels: conv1InChannels, outChannels: width, kernelSize: 1 }));
    this.norm1 = this.addModule(`${normPrefix}1`, buildNorm(norm, width, path));
    this.conv2 = this.addModule('conv2', new Conv2d({ inChannels: width, outChannels: width, kernelSize: 3, stride, padding: 1 }));
    this.norm2 = this.addModule(`${normPrefix}2`, buildNorm(norm, width, path));
    this.conv3 = this.addModule('conv3', new Conv2d({ inChannels: width, outChannels, kernelSize: 1 }));
    this.norm3 = this.addModule(`${normPrefix}3`, buildNorm(norm, outChannels, path, options.zeroInitResidual));
    if (stride !== 1 || inChannels !== outChannels) {
      this.downsample = this.addModule('downsample', new Downsample(inChannels, outChannels, stride, norm, path));
    }
  }

  /** Runs the block on `x`, with `extra` (the RLA state) concatenated to conv1's input when given. */
  forward(x: tf.Tensor4D, extra?: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const input = extra === undefined ? x : tf.concat4d([x, extra], 3);
      let y = tf.relu(this.norm1.forward(this.conv1.forward(input)));
      y = tf.relu(this.norm2.forward(this.conv2.forward(y)));
      y = this.norm3.forward(this.conv3.forward(y));
      const shortcut = this.downsample === undefined ? x : this.downsample.forward(x);
      return tf.relu(tf.add(y, shortcut)) as tf.Tensor4D;
    });
  }
}

/**
 * Base of ResNet and RLAResNet: owns the stem (`conv1`, norm `bn1` or `gn1`, ReLU, 3x3/2 max
 * pool with padding 1) and the frozen-stage and norm_eval rules. A subclass registers its
 * stages, lists each stage's modules in `stageModules`, and calls `applyTrainingRules` at
 * the end of its constructor.
 */
export abstract class ResNetBackboneBase extends Module implements Backbone, ConfigurableInit {
  readonly settings: ResNetSettings;
  readonly conv1: Conv2d;
  readonly norm1: NormLayer;
  readonly outChannels: readonly number[];
  readonly outStrides: readonly number[];

  protected constructor(settings: ResNetSettings, stemNormName: string, protected readonly path: string) {
    super();
    this.settings = settings;
    this.conv1 = this.addModule(
      'conv1',
      new Conv2d({ inChannels: settings.inChannels, outChannels: settings.stemChannels, kernelSize: 7, stride: 2, padding: 3 }),
    );
    this.norm1 = this.addModule(stemNormName, buildNorm(settings.norm, settings.stemChannels, path));
    this.outChannels = settings.outIndices.map((i) => settings.stages[i]!.outChannels);
    this.outStrides = settings.outIndices.map((i) => 4 * 2 ** i);
  }

  get initConfig(): InitConfig | undefined {
    return this.settings.init;
  }

  get configPath(): string {
    return this.path;
  }

  /** Modules of stage `index` (0-based) that `frozenStages` freezes. */
  protected abstract stageModules(index: number): Module[];

  abstract forward(images: tf.Tensor4D): tf.Tensor4D[];

  /** Stem and stages frozen by `frozenStages`, in order. */
  private frozenModules(): Module[] {
    const frozen: Module[] = [];
    if (this.settings.frozenStages >= 0) frozen.push(this.conv1, this.norm1);
    for (let i = 0; i < this.settings.frozenStages; i++) frozen.push(...this.stageModules(i));
    return frozen;
  }

  /** Applies requiresGrad, normEval and frozenStages; subclasses call it once, after building every stage. */
  protected applyTrainingRules(): void {
    for (const [, module] of this.namedModules()) {
      if (module instanceof BatchNorm2d && this.settings.normEval) module.useRunningStats = true;
      if ((module instanceof BatchNorm2d || module instanceof GroupNorm) && !this.settings.norm.requiresGrad) module.freeze();
    }
    for (const module of this.frozenModules()) module.freeze();
    this.train(this.training);
  }

  /** Sets the mode like Module.train, but frozen stages always stay in inference mode. */
  override train(mode = true): this {
    super.train(mode);
    for (const module of this.frozenModules()) module.train(false);
    return this;
  }

  protected checkInput(images: tf.Tensor4D): void {
    if (images.rank !== 4 || images.shape[3] !== this.settings.inChannels) {
      throw new Error(
        `${this.path}: expected images [N, H, W, ${this.settings.inChannels}] (NHWC), got [${images.shape.join(', ')}]`,
      );
    }
  }

  /** conv1, norm, ReLU and a 3x3 stride-2 max pool with padding 1: stride 4 overall. */
  protected stem(images: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => maxPool2d(tf.relu(this.norm1.forward(this.conv1.forward(images))), 3, 2, 1));
  }
}
