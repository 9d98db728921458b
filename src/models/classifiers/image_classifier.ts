import * as tf from '@tensorflow/tfjs-core';

import type { BackboneConfig } from '../../config/component_types.ts';
import { checkOptionKeys } from '../../config/config.ts';
import { Linear } from '../../nn/layers.ts';
import { Module } from '../../nn/module.ts';
import { BACKBONES, CLASSIFIERS } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import { ResNetBackboneBase } from '../backbones/resnet_common.ts';
import { buildNorm, type NormLayer } from '../norm.ts';
import { RLAResNet } from '../backbones/rla_resnet.ts';
import type { Backbone } from '../types.ts';
import type { Classifier } from './types.ts';

export interface ImageClassifierOptions {
  backbone: BackboneConfig;
  /** Output classes; default 1000 (ImageNet). */
  numClasses?: number;
}

declare module '../../config/component_types.ts' {
  interface ClassifierTypes {
    ImageClassifier: ImageClassifierOptions;
  }
}

const OPTION_KEYS = ['backbone', 'numClasses'] as const;

/**
 * ImageNet classifier on a ResNet or RLA-ResNet backbone, as torchvision and the official
 * RLA-Net code build it. A ResNet ends with global average pooling and fc(C5 channels ->
 * classes). An RLA-ResNet first concatenates ReLU(BN(h)) of its final RLA state h to C5, so
 * the fc reads 2048 + k features. Child names are `backbone`, `bn2` (RLA only) and `fc`.
 */
export class ImageClassifier extends Module implements Classifier {
  readonly backbone: Backbone;
  /** Norm of the final RLA state (`bn2` in the official code); undefined for other backbones. */
  readonly stateNorm: NormLayer | undefined;
  readonly fc: Linear;
  readonly numClasses: number;

  constructor(options: ImageClassifierOptions, path = 'model') {
    super();
    checkOptionKeys(path, options, OPTION_KEYS);
    this.numClasses = options.numClasses ?? 1000;
    if (!Number.isInteger(this.numClasses) || this.numClasses < 1) {
      throw new ConfigError(`${path}.numClasses: expected a positive integer, got ${JSON.stringify(options.numClasses)}`);
    }

    this.backbone = this.addModule('backbone', BACKBONES.build(options.backbone, `${path}.backbone`));
    if (this.backbone instanceof ResNetBackboneBase) {
      const { outIndices, stageBlocks } = this.backbone.settings;
      if (outIndices[outIndices.length - 1] !== stageBlocks.length - 1) {
        this.backbone.dispose();
        throw new ConfigError(
          `${path}.backbone.outIndices: the classifier reads the last stage (${stageBlocks.length - 1}), got ${JSON.stringify(outIndices)}`,
        );
      }
    }

    let features = this.backbone.outChannels[this.backbone.outChannels.length - 1]!;
    if (this.backbone instanceof RLAResNet) {
      this.stateNorm = this.addModule('bn2', buildNorm(this.backbone.settings.norm, this.backbone.rlaChannels, `${path}.backbone`));
      features += this.backbone.rlaChannels;
    }
    this.fc = this.addModule('fc', new Linear({ inFeatures: features, outFeatures: this.numClasses }));
  }

  /** Maps images `[N, H, W, 3]` to class logits `[N, numClasses]`. */
  forward(images: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      let last: tf.Tensor4D;
      if (this.backbone instanceof RLAResNet) {
        const { features, state } = this.backbone.forwardWithState(images, true);
        const stateFeatures = tf.relu(this.stateNorm!.forward(state!)) as tf.Tensor4D;
        last = tf.concat4d([features[features.length - 1]!, stateFeatures], 3);
      } else {
        const features = this.backbone.forward(images);
        last = features[features.length - 1]!;
      }
      return this.fc.forward(tf.mean(last, [1, 2]) as tf.Tensor2D);
    });
  }
}

CLASSIFIERS.register('ImageClassifier', (options: ImageClassifierOptions, path: string) => new ImageClassifier(options, path));
