import * as tf from '@tensorflow/tfjs-core';

import type { BackboneConfig, DenseHeadConfig, NeckConfig } from '../../config/component_types.ts';
import { checkOptionKeys } from '../../config/config.ts';
import { Module } from '../../nn/module.ts';
import { BACKBONES, DENSE_HEADS, DETECTORS, NECKS } from '../../registry/index.ts';
import { resolveInitConfig, type ConfigurableInit, type InitConfig } from '../init_config.ts';
import type { Backbone, DenseHead, Detections, Detector, GroundTruth, ImageMeta, LossDict, Neck } from '../types.ts';

export interface SingleStageDetectorOptions {
  backbone: BackboneConfig;
  neck: NeckConfig;
  bboxHead: DenseHeadConfig;
  /** Pretrained weights for the whole detector (an MMDetection or rladet detector checkpoint). */
  init?: InitConfig;
}

declare module '../../config/component_types.ts' {
  interface DetectorTypes {
    RetinaNet: SingleStageDetectorOptions;
    SingleStageDetector: SingleStageDetectorOptions;
  }
}

const OPTION_KEYS = ['backbone', 'neck', 'bboxHead', 'init'] as const;

/**
 * Backbone -> neck -> dense head, the layout of RetinaNet (MMDetection's SingleStageDetector).
 * Child names are `backbone`, `neck` and `bbox_head`, as in MMDetection checkpoints.
 */
export class SingleStageDetector extends Module implements Detector, ConfigurableInit {
  readonly backbone: Backbone;
  readonly neck: Neck;
  readonly bboxHead: DenseHead;
  readonly initConfig: InitConfig | undefined;
  readonly configPath: string;

  constructor(options: SingleStageDetectorOptions, path = 'model') {
    super();
    checkOptionKeys(path, options, OPTION_KEYS);
    this.configPath = path;
    this.initConfig = resolveInitConfig(path, options.init);
    this.backbone = this.addModule('backbone', BACKBONES.build(options.backbone, `${path}.backbone`));
    this.neck = this.addModule('neck', NECKS.build(options.neck, `${path}.neck`));
    this.bboxHead = this.addModule('bbox_head', DENSE_HEADS.build(options.bboxHead, `${path}.bboxHead`) as DenseHead);
  }

  get numClasses(): number {
    return this.bboxHead.numClasses;
  }

  /** Pyramid features `[N, H_l, W_l, C]` for each level; the caller disposes them. */
  extractFeatures(images: tf.Tensor4D): tf.Tensor4D[] {
    return tf.tidy(() => this.neck.forward(this.backbone.forward(images)));
  }

  loss(images: tf.Tensor4D, metas: ImageMeta[], targets: GroundTruth[]): LossDict {
    return tf.tidy(() => this.bboxHead.loss(this.extractFeatures(images), metas, targets));
  }

  async predict(images: tf.Tensor4D, metas: ImageMeta[]): Promise<Detections[]> {
    const features = this.extractFeatures(images);
    try {
      return await this.bboxHead.predict(features, metas);
    } finally {
      tf.dispose(features);
    }
  }

  /** Runs backbone, neck and head once without post-processing (for complexity counting). */
  forwardDummy(images: tf.Tensor4D): void {
    tf.tidy(() => {
      this.bboxHead.forward(this.extractFeatures(images));
    });
  }
}

DETECTORS.register('SingleStageDetector', (options: SingleStageDetectorOptions, path) => new SingleStageDetector(options, path));
DETECTORS.register('RetinaNet', (options: SingleStageDetectorOptions, path) => new SingleStageDetector(options, path));
