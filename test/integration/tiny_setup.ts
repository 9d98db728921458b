import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { buildDataset, buildLoader } from '../../src/apis/build.ts';
import type { TransformConfig } from '../../src/config/component_types.ts';
import { defineConfig } from '../../src/config/config.ts';
import type { DetectionConfig } from '../../src/config/detection_config.ts';
import type { Batch } from '../../src/engine/train_step.ts';

/** Two real coco-mini photos with one object each (a bench and a stop sign), and a tiny RLA RetinaNet config for them. */
const COCO_MINI = resolve('data/coco-mini');
const IMAGE_IDS = [216794, 525891];

export function writeTwoPhotoSubset(dir: string): string {
  const full = JSON.parse(readFileSync(join(COCO_MINI, 'annotations/instances_train2017.json'), 'utf8')) as {
    images: Array<{ id: number }>;
    annotations: Array<{ image_id: number }>;
  };
  const subset = {
    ...full,
    images: full.images.filter((image) => IMAGE_IDS.includes(image.id)),
    annotations: full.annotations.filter((annotation) => IMAGE_IDS.includes(annotation.image_id)),
  };
  const path = join(dir, 'two_photos.json');
  writeFileSync(path, JSON.stringify(subset));
  return path;
}

export function tinyConfig(annFile: string): DetectionConfig {
  const normalize: TransformConfig = { type: 'Normalize', mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375], toRgb: true };
  const common = { type: 'CocoDataset' as const, annFile, imgPrefix: join(COCO_MINI, 'train2017'), classes: ['bench', 'stop sign'] };
  const resize: TransformConfig = { type: 'Resize', imgScale: [256, 192], keepRatio: true };
  return defineConfig({
    model: {
      type: 'RetinaNet',
      backbone: { type: 'RLAResNet', stageBlocks: [1, 1, 1, 1], baseChannels: 8, rlaChannels: 8, frozenStages: -1, normEval: false, norm: 'BN' },
      neck: { type: 'FPN', inChannels: [32, 64, 128, 256], outChannels: 32, startLevel: 1, addExtraConvs: 'on_input', numOuts: 5 },
      bboxHead: { type: 'RetinaHead', numClasses: 2, inChannels: 32, featChannels: 32, stackedConvs: 1 },
    },
    data: {
      imagesPerBatch: 2,
      prefetch: 0,
      train: { ...common, pipeline: [{ type: 'LoadImageFromFile' }, { type: 'LoadAnnotations', withBbox: true }, resize, normalize, { type: 'Pad', sizeDivisor: 32 }] },
      val: { ...common, testMode: true, pipeline: [{ type: 'LoadImageFromFile' }, resize, normalize, { type: 'Pad', sizeDivisor: 32 }] },
      test: { ...common, testMode: true, pipeline: [{ type: 'LoadImageFromFile' }, resize, normalize, { type: 'Pad', sizeDivisor: 32 }] },
    },
    optimizer: { type: 'SGD', lr: 0.01, momentum: 0.9, weightDecay: 0.0001 },
    optimizerConfig: { gradClip: { maxNorm: 35 } },
    lrConfig: { policy: 'step', warmup: 'linear', warmupIters: 20, warmupRatio: 0.001, step: [1000] },
    runner: { type: 'EpochBasedRunner', maxEpochs: 150 },
  });
}


/** Loads the first batch of the training loader of `config`, seeded with 0, and closes the loader. The caller owns its tensors. */
export async function loadFirstTrainingBatch(config: DetectionConfig): Promise<Batch> {
  const loader = buildLoader(buildDataset(config.data.train, 'data.train'), config.data, 'train', 0);
  const batch = (await loader.iterate(0).next()).value!;
  await loader.close();
  return batch;
}
