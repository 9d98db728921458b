import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../../config/config.ts';
import { Conv2d } from '../../nn/layers.ts';
import { ModuleList, type Module } from '../../nn/module.ts';
import { BACKBONES } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import { buildNorm, type NormLayer } from '../norm.ts';
import { Bottleneck, RESNET_COMMON_OPTION_KEYS, ResNetBackboneBase, resolveResNetSettings, type ResNetCommonOptions } from './resnet_common.ts';

export interface RLAResNetOptions extends ResNetCommonOptions {
  /** Channels k of the RLA state h; default 32. */
  rlaChannels?: number;
  /** Blocks per stage under the official code's name; the same as `stageBlocks`. */
  layers?: number[];
}

declare module '../../config/component_types.ts' {
  interface BackboneTypes {
    RLAResNet: RLAResNetOptions;
    RLA_ResNet: RLAResNetOptions;
  }
}

const RLA_OPTION_KEYS = [...RESNET_COMMON_OPTION_KEYS, 'rlaChannels', 'layers'] as const;

/** Output of `RLAResNet.forwardWithState`. */
export interface RLAResNetOutput {
  /** Outputs of the stages in `outIndices`, as `forward` returns them. */
  features: tf.Tensor4D[];
  /** The RLA state h after the last block, `[N, H/32, W/32, k]`; only when requested. */
  state: tf.Tensor4D | undefined;
}

/**
 * RLA-ResNet (Zhao et al., "Recurrence along Depth", NeurIPS 2021) as the authors' MMDetection
 * backbone `RLA_ResNet` builds it. Besides the bottleneck stream x, a state h with k channels
 * starts as zeros at the stem's output and passes through every block:
 *
 * - conv1 of each block reads concat(x, h), so it has C + k input channels;
 * - a stride-2 block average-pools h 2x2 before passing it on;
 * - after each block with output x': h = recurrentConv_s(tanh(BN_b(h + convOut_s(x')))), where
 *   convOut_s (1x1, 4 * planes -> k) and recurrentConv_s (3x3, k -> k) are one pair per stage
 *   s, shared by its blocks, and BN_b is one norm layer per block.
 *
 * convOut reads the block output x' = ReLU(y + shortcut), not the residual branch y. The
 * official bottleneck returns y, but y is the same tensor as its output, which the in-place
 * `out += identity` and `ReLU(inplace=True)` overwrite before the update reads it. The
 * outputs recorded from the official code (test/fixtures/rla) agree only with x'.
 *
 * Parameter names match the official code (`stages.0.0.conv1.weight`, `stage_bns.0.0.weight`,
 * `conv_outs.0.weight`, `recurrent_convs.0.weight`), so its checkpoints map 1:1; norm layers
 * keep the `bn` names even with GroupNorm, as there. `frozenStages` also freezes each frozen
 * stage's stage_bns, conv_outs and recurrent_convs.
 *
 * The official code only runs when the stem output's sides are even at every stage, because
 * its floor-mode 2x2 pooling of h and the strided convolution disagree on odd sizes. Here h
 * is pooled with TensorFlow 'same' padding, which averages the valid cells of each window
 * (PyTorch's ceil_mode), so any input size works and even sizes give the official result.
 */
export class RLAResNet extends ResNetBackboneBase {
  readonly rlaChannels: number;
  readonly convOuts: ModuleList<Conv2d>;
  readonly recurrentConvs: ModuleList<Conv2d>;
  readonly stages: ModuleList<ModuleList<Bottleneck>>;
  readonly stageNorms: ModuleList<ModuleList<NormLayer>>;

  constructor(options: RLAResNetOptions, path = 'model.backbone') {
    checkOptionKeys(path, options, RLA_OPTION_KEYS);
    const { rlaChannels = 32, layers, ...common } = options;
    if (layers !== undefined && common.stageBlocks !== undefined) {
      throw new ConfigError(`${path}: give the blocks per stage as either 'layers' or 'stageBlocks', not both`);
    }
    if (!Number.isInteger(rlaChannels) || rlaChannels < 1) {
      throw new ConfigError(`${path}.rlaChannels: expected a positive integer, got ${JSON.stringify(rlaChannels)}`);
    }
    const settings = resolveResNetSettings(layers === undefined ? common : { ...common, stageBlocks: layers }, path);
    super(settings, 'bn1', path);
    this.rlaChannels = rlaChannels;

    // Registration order follows the official module: conv_outs, recurrent_convs, stages, stage_bns.
    this.convOuts = this.addModule('conv_outs', new ModuleList<Conv2d>());
    this.recurrentConvs = this.addModule('recurrent_convs', new ModuleList<Conv2d>());
    this.stages = this.addModule('stages', new ModuleList<ModuleList<Bottleneck>>());
    this.stageNorms = this.addModule('stage_bns', new ModuleList<ModuleList<NormLayer>>());

    let inChannels = settings.stemChannels;
    settings.stages.forEach((stage, stageIndex) => {
      this.convOuts.push(new Conv2d({ inChannels: stage.outChannels, outChannels: rlaChannels, kernelSize: 1 }));
      this.recurrentConvs.push(new Conv2d({ inChannels: rlaChannels, outChannels: rlaChannels, kernelSize: 3, padding: 1 }));
      const blocks = new ModuleList<Bottleneck>();
      const norms = new ModuleList<NormLayer>();
      for (let b = 0; b < settings.stageBlocks[stageIndex]!; b++) {
        blocks.push(
          new Bottleneck({
            inChannels,
            width: stage.width,
            outChannels: stage.outChannels,
            stride: b === 0 ? stage.stride : 1,
            norm: settings.norm,
            zeroInitResidual: settings.zeroInitResidual,
            extraInputChannels: rlaChannels,
            normPrefix: 'bn',
            path,
          }),
        );
        norms.push(buildNorm(settings.norm, rlaChannels, path));
        inChannels = stage.outChannels;
      }
      this.stages.push(blocks);
      this.stageNorms.push(norms);
    });
    this.applyTrainingRules();
  }

  protected stageModules(index: number): Module[] {
    return [this.stages.at(index), this.stageNorms.at(index), this.convOuts.at(index), this.recurrentConvs.at(index)];
  }

  /** Maps images `[N, H, W, C]` to the outputs of the stages in `outIndices`; the caller disposes them. */
  forward(images: tf.Tensor4D): tf.Tensor4D[] {
    return this.forwardWithState(images, false).features;
  }

  /**
   * Runs the backbone and, when `keepFinalState` is set, also returns the RLA state after the
   * last block (the ImageNet classifier reads it). Only that state depends on the last RLA
   * update, so inference skips the update unless the state is requested. Training runs it,
   * because its norm layer updates its running statistics there as in the official code.
   */
  forwardWithState(images: tf.Tensor4D, keepFinalState: boolean): RLAResNetOutput {
    this.checkInput(images);
    const result = tf.tidy(() => {
      let x = this.stem(images);
      let h: tf.Tensor4D = tf.zeros([x.shape[0], x.shape[1], x.shape[2], this.rlaChannels]);
      const features: tf.Tensor4D[] = [];
      const lastStage = this.stages.length - 1;

      for (let s = 0; s <= lastStage; s++) {
        const blocks = this.stages.at(s);
        for (let b = 0; b < blocks.length; b++) {
          const block = blocks.at(b);
          x = block.forward(x, h);
          // Pool h to the block output's size: 2x2/2 averaging, which is the official pooling on even sizes.
          if (block.stride !== 1) h = tf.avgPool(h, 2, 2, 'same');
          const isLastBlock = s === lastStage && b === blocks.length - 1;
          if (isLastBlock && !keepFinalState && !this.training) break;
          h = this.updateState(s, b, h, x);
        }
        if (this.settings.outIndices.includes(s)) features.push(x);
      }
      return keepFinalState ? [...features, h] : features;
    });
    if (!keepFinalState) return { features: result, state: undefined };
    return { features: result.slice(0, -1), state: result[result.length - 1] };
  }

  /** Computes the RLA state after block `b` of stage `s`: recurrentConv_s(tanh(BN_b(h + convOut_s(x)))). */
  private updateState(s: number, b: number, h: tf.Tensor4D, blockOutput: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const summed = tf.add(h, this.convOuts.at(s).forward(blockOutput)) as tf.Tensor4D;
      return this.recurrentConvs.at(s).forward(tf.tanh(this.stageNorms.at(s).at(b).forward(summed)));
    });
  }
}

BACKBONES.register('RLAResNet', (options: RLAResNetOptions, path: string) => new RLAResNet(options, path), { aliases: ['RLA_ResNet'] });
