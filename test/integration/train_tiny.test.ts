import * as tf from '@tensorflow/tfjs-core';
import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildDataset, buildDetector, buildLoader } from '../../src/apis/build.ts';
import { evaluateDetector } from '../../src/apis/evaluation.ts';
import { initBackend } from '../../src/backends/index.ts';
import { SGD } from '../../src/engine/optimizer.ts';
import { StepLrSchedule } from '../../src/engine/lr_schedule.ts';
import { trainStep } from '../../src/engine/train_step.ts';
import { setInitSeed } from '../../src/nn/init.ts';
import { tinyConfig, writeTwoPhotoSubset } from './tiny_setup.ts';

/** Trains the tiny RLA RetinaNet from scratch on the two photos until it finds both objects, checking that no tensor leaks. */

test.serial('tiny RLA RetinaNet memorises two photos', async (t) => {
  await initBackend('wasm');
  setInitSeed(3);
  const config = tinyConfig(writeTwoPhotoSubset(mkdtempSync(join(tmpdir(), 'rladet-tiny-'))));
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
