import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../../config/config.ts';
import { normal } from '../../nn/init.ts';
import { Conv2d } from '../../nn/layers.ts';
import { Module, ModuleList } from '../../nn/module.ts';
import { DENSE_HEADS } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import '../losses/index.ts';
import { buildNorm, normLayerPrefix, resolveNorm, type NormLayer, type NormOptions, type NormType, type ResolvedNorm } from '../norm.ts';
import '../task_modules/anchor_generator.ts';
import '../task_modules/delta_xywh_coder.ts';
import '../task_modules/max_iou_assigner.ts';
import { ANCHOR_HEAD_OPTION_KEYS, AnchorHead, type AnchorHeadDefaults, type AnchorHeadOptions, type AnchorHeadOutputs } from './anchor_head.ts';

export interface RetinaHeadOptions extends AnchorHeadOptions {
  /** 3x3 convolutions (with ReLU) in each of the class and box branches before the output convolution. */
  stackedConvs?: number;
  /** Norm after each stacked convolution (MMDetection's `norm_cfg`), none by default. 'GN' suits training from scratch. */
  norm?: NormType | NormOptions;
}

declare module '../../config/component_types.ts' {
  interface DenseHeadTypes {
    RetinaHead: RetinaHeadOptions;
  }
}

/** MMDetection 2.x RetinaNet defaults (configs/_base_/models/retinanet_r50_fpn.py). */
export const RETINA_HEAD_DEFAULTS: AnchorHeadDefaults = {
  featChannels: 256,
  anchorGenerator: {
    type: 'AnchorGenerator',
    octaveBaseScale: 4,
    scalesPerOctave: 3,
    ratios: [0.5, 1.0, 2.0],
    strides: [8, 16, 32, 64, 128],
  },
  bboxCoder: { type: 'DeltaXYWHBBoxCoder', targetMeans: [0, 0, 0, 0], targetStds: [1, 1, 1, 1] },
  lossCls: { type: 'FocalLoss', useSigmoid: true, gamma: 2, alpha: 0.25, lossWeight: 1 },
  lossBbox: { type: 'L1Loss', lossWeight: 1 },
  trainCfg: {
    assigner: { type: 'MaxIoUAssigner', posIouThr: 0.5, negIouThr: 0.4, minPosIou: 0, ignoreIofThr: -1 },
    allowedBorder: -1,
    posWeight: -1,
  },
  testCfg: { nmsPre: 1000, minBboxSize: 0, scoreThr: 0.05, nms: { type: 'nms', iouThreshold: 0.5 }, maxPerImg: 100 },
};

/** Prior probability of foreground that the class-logit bias starts at (RetinaNet's pi = 0.01). */
const PRIOR_PROBABILITY = 0.01;

/**
 * Conv 3x3 -> optional norm -> ReLU, named like mmcv's `ConvModule` (`conv`, then `bn` or `gn`)
 * so that MMDetection checkpoints map onto it. The convolution has a bias only without a norm.
 */
class StackedConv extends Module {
  readonly conv: Conv2d;
  readonly norm: NormLayer | undefined;

  constructor(inChannels: number, outChannels: number, norm: ResolvedNorm | undefined, path: string) {
    super();
    this.conv = this.addModule(
      'conv',
      new Conv2d({
        inChannels,
        outChannels,
        kernelSize: 3,
        padding: 1,
        bias: norm === undefined,
        init: (shape) => normal(shape, 0.01),
        biasInit: (shape) => tf.zeros([...shape]),
      }),
    );
    if (norm !== undefined) {
      this.norm = this.addModule(normLayerPrefix(norm), buildNorm(norm, outChannels, path));
      if (!norm.requiresGrad) this.norm.freeze();
    }
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const y = this.conv.forward(x);
      return tf.relu(this.norm === undefined ? y : this.norm.forward(y));
    });
  }
}

/**
 * RetinaNet's head (MMDetection 2.x `RetinaHead`): two branches of `stackedConvs` 3x3
 * convolutions shared by all levels, ending in `retina_cls` (A * K logits per cell) and
 * `retina_reg` (A * 4 deltas per cell). Convolutions start from normal(0, 0.01) with zero
 * bias, except that the class bias starts at -log((1 - 0.01) / 0.01), so every anchor begins
 * with foreground probability 0.01.
 */
export class RetinaHead extends AnchorHead {
  readonly stackedConvs: number;
  readonly clsConvs: ModuleList<StackedConv>;
  readonly regConvs: ModuleList<StackedConv>;
  readonly retinaCls: Conv2d;
  readonly retinaReg: Conv2d;

  constructor(options: RetinaHeadOptions, path = 'bboxHead') {
    checkOptionKeys(path, options, [...ANCHOR_HEAD_OPTION_KEYS, 'stackedConvs', 'norm']);
    super(options, RETINA_HEAD_DEFAULTS, path);
    this.stackedConvs = options.stackedConvs ?? 4;
    if (!(Number.isInteger(this.stackedConvs) && this.stackedConvs >= 0)) {
      throw new ConfigError(`${path}: 'stackedConvs' must be a non-negative integer, got ${JSON.stringify(options.stackedConvs)}`);
    }
    const norm = options.norm === undefined ? undefined : resolveNorm(options.norm, path);

    this.clsConvs = this.addModule('cls_convs', new ModuleList<StackedConv>());
    this.regConvs = this.addModule('reg_convs', new ModuleList<StackedConv>());
    for (let i = 0; i < this.stackedConvs; i++) {
      const inChannels = i === 0 ? this.inChannels : this.featChannels;
      this.clsConvs.push(new StackedConv(inChannels, this.featChannels, norm, path));
      this.regConvs.push(new StackedConv(inChannels, this.featChannels, norm, path));
    }
    const lastChannels = this.stackedConvs === 0 ? this.inChannels : this.featChannels;
    const clsBias = -Math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY);
    this.retinaCls = this.addModule('retina_cls', outputConv(lastChannels, this.numBaseAnchors * this.clsOutChannels, clsBias));
    this.retinaReg = this.addModule('retina_reg', outputConv(lastChannels, this.numBaseAnchors * 4, 0));
  }

  forward(features: tf.Tensor4D[]): AnchorHeadOutputs {
    return tf.tidy(() => {
      const clsScores: tf.Tensor4D[] = [];
      const bboxPreds: tf.Tensor4D[] = [];
      for (const feature of features) {
        let clsFeature = feature;
        let regFeature = feature;
        for (const conv of this.clsConvs) clsFeature = conv.forward(clsFeature);
        for (const conv of this.regConvs) regFeature = conv.forward(regFeature);
        clsScores.push(this.retinaCls.forward(clsFeature));
        bboxPreds.push(this.retinaReg.forward(regFeature));
      }
      return { clsScores, bboxPreds };
    });
  }
}

function outputConv(inChannels: number, outChannels: number, bias: number): Conv2d {
  return new Conv2d({
    inChannels,
    outChannels,
    kernelSize: 3,
    padding: 1,
    bias: true,
    init: (shape) => normal(shape, 0.01),
    biasInit: (shape) => tf.fill([...shape], bias),
  });
}

DENSE_HEADS.register('RetinaHead', (options: RetinaHeadOptions, path) => new RetinaHead(options, path));
