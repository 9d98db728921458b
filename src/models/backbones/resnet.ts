import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../../config/config.ts';
import { ModuleList, type Module } from '../../nn/module.ts';
import { BACKBONES } from '../../registry/index.ts';
import { normLayerPrefix } from '../norm.ts';
import { Bottleneck, RESNET_COMMON_OPTION_KEYS, ResNetBackboneBase, resolveResNetSettings, type ResNetCommonOptions } from './resnet_common.ts';

export type ResNetOptions = ResNetCommonOptions;

declare module '../../config/component_types.ts' {
  interface BackboneTypes {
    ResNet: ResNetOptions;
  }
}

/**
 * Bottleneck ResNet (He et al., 2016) as MMDetection 2.x builds it with style 'pytorch': the
 * stride sits on the 3x3 convolution, and the shortcut of each stage's first block is a 1x1
 * convolution + norm. Returns the outputs of the stages in `outIndices` (C2..C5 by default).
 *
 * Parameter names follow torchvision and MMDetection (`conv1.weight`, `bn1.running_mean`,
 * `layer1.0.conv2.weight`, `layer1.0.downsample.0.weight`), so PyTorch checkpoints map by
 * name. With `norm: 'GN'` the norm layers are named `gn1`, `gn2`, `gn3`, as in MMDetection, and
 * with 'SyncBN' they keep the `bn` names.
 */
export class ResNet extends ResNetBackboneBase {
  /** Stage i is the child `layer{i + 1}`. */
  readonly layers: Array<ModuleList<Bottleneck>> = [];

  constructor(options: ResNetOptions, path = 'model.backbone') {
    checkOptionKeys(path, options, RESNET_COMMON_OPTION_KEYS);
    const settings = resolveResNetSettings(options, path);
    const normPrefix = normLayerPrefix(settings.norm);
    super(settings, `${normPrefix}1`, path);

    let inChannels = settings.stemChannels;
    settings.stages.forEach((stage, stageIndex) => {
      const blocks = new ModuleList<Bottleneck>();
      for (let b = 0; b < settings.stageBlocks[stageIndex]!; b++) {
        blocks.push(
          new Bottleneck({
            inChannels,
            width: stage.width,
            outChannels: stage.outChannels,
            stride: b === 0 ? stage.stride : 1,
            norm: settings.norm,
            zeroInitResidual: settings.zeroInitResidual,
            normPrefix,
            path,
          }),
        );
        inChannels = stage.outChannels;
      }
      this.layers.push(this.addModule(`layer${stageIndex + 1}`, blocks));
    });
    this.applyTrainingRules();
  }

  protected stageModules(index: number): Module[] {
    return [this.layers[index]!];
  }

  /** Maps images `[N, H, W, C]` to the outputs of the stages in `outIndices`; the caller disposes them. */
  forward(images: tf.Tensor4D): tf.Tensor4D[] {
    this.checkInput(images);
    return tf.tidy(() => {
      let x = this.stem(images);
      const outputs: tf.Tensor4D[] = [];
      this.layers.forEach((blocks, stageIndex) => {
        for (const block of blocks) x = block.forward(x);
        if (this.settings.outIndices.includes(stageIndex)) outputs.push(x);
      });
      return outputs;
    });
  }
}

BACKBONES.register('ResNet', (options: ResNetOptions, path: string) => new ResNet(options, path));
