import * as tf from '@tensorflow/tfjs-core';
import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { buildDataset, buildDetector, buildLoader } from '../../src/apis/build.ts';
import { evaluateDetector } from '../../src/apis/evaluation.ts';
import { initBackend } from '../../src/backends/index.ts';
import type { TransformConfig } from '../../src/config/component_types.ts';
import { defineConfig } from '../../src/config/config.ts';
import type { DetectionConfig } from '../../src/config/detection_config.ts';
import { SGD } from '../../src/engine/optimizer.ts';
import { StepLrSchedule } from '../../src/engine/lr_schedule.ts';
import { trainStep } from '../../src/engine/train_step.ts';
import { setInitSeed } from '../../src/nn/init.ts';

/**
 * Trains a tiny RLA-ResNet RetinaNet from scratch on two real coco-mini photos with one object
 * each (a bench and a stop sign) until it finds both, checking that no tensor leaks.
 */
const COCO_MINI = resolve('data/coco-mini');
const IMAGE_IDS = [216794, 525891];

function writeSubset(dir: string): string {
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

function tinyConfig(annFile: string): DetectionConfig {
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

test.serial('tiny RLA RetinaNet memorises two photos', async (t) => {
  await initBackend('wasm');
  setInitSeed(3);
  const config = tinyConfig(writeSubset(mkdtempSync(join(tmpdir(), 'rladet-tiny-'))));
  const model = buildDetector(config.model);
  const trainSet = buildDataset(config.data.train, 'data.train');
  const valSet = buildDataset(config.data.val, 'data.val');
  const trainLoader = buildLoader(trainSet, config.data, 'train', 0);
  const valLoader = buildLoader(valSet, config.data, 'test', 0);
  const sgd = new SGD(config.optimizer);
  const schedule = new StepLrSchedule(config.optimizer.lr, config.lrConfig);

  const batch = (await trainLoader.iterate(0).next()).value!;
  const tensorCounts: number[] = [];
  const losses: number[] = [];
  let ap50 = 0;
  for (let iteration = 0; iteration < config.runner.maxEpochs; iteration++) {
    const { losses: step } = trainStep(model, batch, sgd, schedule.lrAt(0, iteration), iteration + 1, 35);
    losses.push(step['loss']!);
    tensorCounts.push(tf.memory().numTensors);
    if ((iteration + 1) % 50 === 0) {
      const evaluation = await evaluateDetector(model, valSet, valLoader);
      model.train();
      ap50 = evaluation.stats[1]!;
      t.log(`iteration ${iteration + 1}: loss ${step['loss']!.toFixed(4)}, AP50 ${ap50.toFixed(3)}`);
      if (ap50 >= 0.9) break;
    }
  }
  batch.images.dispose();
  await trainLoader.close();
  await valLoader.close();

  t.true(ap50 >= 0.9, `AP50 ${ap50}`);
  t.true(losses[losses.length - 1]! < losses[0]! / 2, `loss ${losses[0]} -> ${losses[losses.length - 1]}`);
  // After the first step (momentum buffers appear), the live tensor count stays flat.
  t.deepEqual(new Set(tensorCounts.slice(1)).size, 1, `tensor counts ${[...new Set(tensorCounts)].join(', ')}`);
  sgd.disposeState();
  model.dispose();
});
