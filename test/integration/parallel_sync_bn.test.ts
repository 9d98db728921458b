import * as tf from '@tensorflow/tfjs-core';
import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildDetector } from '../../src/apis/build.ts';
import { initBackend } from '../../src/backends/index.ts';
import type { DetectionConfig } from '../../src/config/detection_config.ts';
import { SGD } from '../../src/engine/optimizer.ts';
import { countLiveWorkers, ParallelTrainer } from '../../src/engine/parallel/parallel_trainer.ts';
import { applyGradients, trainStep, type Batch } from '../../src/engine/train_step.ts';
import type { SingleStageDetector } from '../../src/models/detectors/single_stage.ts';
import { setInitSeed } from '../../src/nn/init.ts';
import { loadFirstTrainingBatch, tinyConfig, writeTwoPhotoSubset } from './tiny_setup.ts';

/**
 * SyncBN in data-parallel training of the tiny RLA RetinaNet on two real photos, on wasm: two
 * workers with one image each against one process with batch norm over both images.
 */

const annFile = writeTwoPhotoSubset(mkdtempSync(join(tmpdir(), 'rladet-syncbn-data-')));
const baseConfig = tinyConfig(annFile);
const syncConfig: DetectionConfig['model'] = { ...baseConfig.model, backbone: { ...baseConfig.model.backbone, norm: 'SyncBN' } };
const LRS = [0.002, 0.005, 0.01];
const CLIP = 35;
// Largest difference |replica - reference| / max(1, |reference|) accepted after three steps.
// The replicas sum the batch statistics of the two images in float64 and the reference sums
// them in float32 in one tensor, so the weights differ by float32 rounding carried through
// three steps. Measured: at most 3.3e-7 (wasm backend, Node 20).
const TOLERANCE = 1e-5;

let batch: Batch;

test.before(async () => {
  await initBackend('wasm');
  batch = await loadFirstTrainingBatch(baseConfig);
});

test.after.always(() => {
  batch?.images.dispose();
});

function build(model: DetectionConfig['model']): SingleStageDetector {
  setInitSeed(7);
  return buildDetector(model) as SingleStageDetector;
}

function valuesOf(model: SingleStageDetector): Map<string, Float32Array> {
  return new Map([...model.stateDict()].map(([name, variable]) => [name, Float32Array.from(variable.dataSync())]));
}

/**
 * Computes the gradients that two workers with one image each average, in one thread: batch
 * norm over both images, then the mean of the two images' losses, each normalised within its
 * image as a worker normalises it.
 */
function referenceGradients(model: SingleStageDetector): Map<string, tf.Tensor> {
  const trainable = model.trainableParameters();
  const { value, grads } = tf.variableGrads(() => {
    const features = model.extractFeatures(batch.images);
    const perImage = [0, 1].map((n) => {
      const sliced = features.map((level) => tf.slice(level, [n, 0, 0, 0], [1, -1, -1, -1]));
      return tf.addN(Object.values(model.bboxHead.loss(sliced, [batch.metas[n]!], [batch.targets[n]!])));
    });
    return tf.div(tf.add(perImage[0]!, perImage[1]!), 2) as tf.Scalar;
  }, trainable.map(([, variable]) => variable));
  value.dispose();
  const nameOf = new Map(trainable.map(([name, variable]) => [variable.name, name]));
  return new Map(Object.entries(grads).map(([variableName, grad]) => [nameOf.get(variableName)!, grad]));
}

test.serial('SyncBN workers match one-process BN', async (t) => {
  const reference = build(baseConfig.model);
  const replicated = build(syncConfig);
  const sgd = new SGD(baseConfig.optimizer);
  const trainer = await ParallelTrainer.start(replicated, undefined, { workers: 2, backend: 'wasm', model: syncConfig, optimizer: baseConfig.optimizer });
  const workerTensors: number[][] = [];
  let states: Array<Map<string, Float32Array>>;
  try {
    for (const [i, lr] of LRS.entries()) {
      const result = await trainer.step(batch, lr, i + 1, CLIP);
      t.deepEqual(result.shardSizes, [1, 1]);
      workerTensors.push(result.workerTensors);
      const grads = referenceGradients(reference);
      const gradNorm = applyGradients(reference, grads, sgd, lr, CLIP)!;
      t.true(Math.abs(result.gradNorm! - gradNorm) <= TOLERANCE * gradNorm, `gradient norm of step ${i + 1}: ${result.gradNorm} against ${gradNorm}`);
      tf.dispose([...grads.values()]);
    }
    states = await trainer.replicaStates();
  } finally {
    await trainer.close();
  }

  const expected = valuesOf(reference);
  const runningStats = [...expected.keys()].filter((name) => name.endsWith('running_mean') || name.endsWith('running_var'));
  t.true(runningStats.length >= 40, `${runningStats.length} running statistics`);
  let worst = 0;
  for (const [name, values] of expected) {
    const actual = states[0]!.get(name)!;
    let difference = 0;
    for (let k = 0; k < values.length; k++) difference = Math.max(difference, Math.abs(actual[k]! - values[k]!) / Math.max(1, Math.abs(values[k]!)));
    worst = Math.max(worst, difference);
    t.true(difference <= TOLERANCE, `${name}: relative difference ${difference}`);
    t.deepEqual(states[1]!.get(name), actual, `${name} identical in both replicas`);
  }
  t.log(`largest relative difference from the reference: ${worst.toExponential(2)}`);

  for (const counts of workerTensors) t.deepEqual(counts, workerTensors[0], `worker tensor counts ${JSON.stringify(workerTensors)}`);
  sgd.disposeState();
  reference.dispose();
  replicated.dispose();
  t.is(countLiveWorkers(), 0);
});

test.serial('SyncBN in one process equals BN', (t) => {
  const before = tf.memory().numTensors;
  const plain = build(baseConfig.model);
  const synced = build(syncConfig);
  const plainSgd = new SGD(baseConfig.optimizer);
  const syncedSgd = new SGD(baseConfig.optimizer);
  for (const [i, lr] of LRS.slice(0, 2).entries()) {
    const expected = trainStep(plain, batch, plainSgd, lr, i + 1, CLIP);
    const actual = trainStep(synced, batch, syncedSgd, lr, i + 1, CLIP);
    t.deepEqual(actual, expected, `losses and gradient norm of step ${i + 1}`);
  }
  const expected = valuesOf(plain);
  const actual = valuesOf(synced);
  t.deepEqual([...actual.keys()], [...expected.keys()]);
  for (const [name, values] of expected) t.deepEqual(actual.get(name), values, name);
  for (const sgd of [plainSgd, syncedSgd]) sgd.disposeState();
  plain.dispose();
  synced.dispose();
  t.is(tf.memory().numTensors, before);
});
