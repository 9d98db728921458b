import * as tf from '@tensorflow/tfjs-core';
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildDataset, buildDetector, buildLoader } from '../../src/apis/build.ts';
import { initBackend } from '../../src/backends/index.ts';
import type { DetectionConfig } from '../../src/config/detection_config.ts';
import { SGD } from '../../src/engine/optimizer.ts';
import { countLiveWorkers, ParallelTrainer } from '../../src/engine/parallel/parallel_trainer.ts';
import { runTraining } from '../../src/engine/runner.ts';
import { applyGradients, computeGradients, trainStep, type Batch } from '../../src/engine/train_step.ts';
import type { Detector } from '../../src/models/types.ts';
import { setInitSeed } from '../../src/nn/init.ts';
import { NonFiniteLossError, RladetError } from '../../src/utils/errors.ts';
import type { Fault } from './parallel_faults.ts';
import { runTool } from './run_tool.ts';
import './parallel_faults.ts';
import { loadFirstTrainingBatch, tinyConfig, writeTwoPhotoSubset } from './tiny_setup.ts';

/** Data-parallel training of the tiny RLA RetinaNet on two real photos (one image per worker), on wasm. */

const FAULTS_MODULE = new URL('./parallel_faults.ts', import.meta.url).href;
const annFile = writeTwoPhotoSubset(mkdtempSync(join(tmpdir(), 'rladet-parallel-data-')));
const baseConfig = tinyConfig(annFile);
const LRS = [0.002, 0.005, 0.01];

let batch: Batch;

test.before(async () => {
  await initBackend('wasm');
  batch = await loadFirstTrainingBatch(baseConfig);
});

test.after.always(() => {
  batch?.images.dispose();
});

function build(seed: number): Detector {
  setInitSeed(seed);
  return buildDetector(baseConfig.model);
}

function startTrainer(model: Detector, workers: number): Promise<ParallelTrainer> {
  return ParallelTrainer.start(model, undefined, { workers, backend: 'wasm', model: baseConfig.model, optimizer: baseConfig.optimizer });
}

/** Parameters (and, with `withBuffers`, buffers) of a model as plain arrays by name. */
function stateOf(model: Detector, withBuffers: boolean): Map<string, number[]> {
  const entries = withBuffers ? [...model.stateDict()] : model.namedParameters();
  return new Map(entries.map(([name, variable]) => [name, Array.from(variable.dataSync())]));
}

test.serial('one worker equals plain train step', async (t) => {
  const plain = build(7);
  const replicated = build(8);
  const plainSgd = new SGD(baseConfig.optimizer);
  const copiedSgd = new SGD(baseConfig.optimizer);
  // Replica weights come from `replicated`, which starts different from `plain`, so copy them over first.
  for (const [name, variable] of replicated.stateDict()) variable.assign(plain.stateDict().get(name)!);
  const trainer = await startTrainer(replicated, 1);
  try {
    for (const [i, lr] of LRS.entries()) {
      const expected = trainStep(plain, batch, plainSgd, lr, i + 1, 35);
      const actual = await trainer.step(batch, lr, i + 1, 35);
      t.deepEqual(actual.losses, expected.losses, `losses of step ${i + 1}`);
      t.is(actual.gradNorm, expected.gradNorm, `gradient norm of step ${i + 1}`);
      t.deepEqual(actual.shardSizes, [2]);
    }
    await trainer.copyStateTo(replicated, copiedSgd);
  } finally {
    await trainer.close();
  }

  const expectedState = stateOf(plain, true);
  for (const [name, values] of stateOf(replicated, true)) t.deepEqual(values, expectedState.get(name), name);
  const expectedMomentum = plainSgd.stateTensors();
  t.is(copiedSgd.stateTensors().size, expectedMomentum.size);
  for (const [name, buffer] of copiedSgd.stateTensors()) {
    t.deepEqual(Array.from(buffer.dataSync()), Array.from(expectedMomentum.get(name)!.dataSync()), name);
  }
  plainSgd.disposeState();
  copiedSgd.disposeState();
  plain.dispose();
  replicated.dispose();
});

test.serial('two workers average per-image gradients', async (t) => {
  const reference = build(7);
  const replicated = build(7);
  const sgd = new SGD(baseConfig.optimizer);
  const trainer = await startTrainer(replicated, 2);
  const workerTensors: number[][] = [];
  let states: Array<Map<string, Float32Array>>;
  try {
    for (const [i, lr] of LRS.entries()) {
      const result = await trainer.step(batch, lr, i + 1, 35);
      t.deepEqual(result.shardSizes, [1, 1]);
      workerTensors.push(result.workerTensors);

      // The same step in this thread: the gradient of each image alone, then their mean.
      const perImage = [0, 1].map((n) => {
        const images = tf.slice(batch.images, [n, 0, 0, 0], [1, -1, -1, -1]);
        try {
          return computeGradients(reference, { images, metas: [batch.metas[n]!], targets: [batch.targets[n]!] });
        } finally {
          images.dispose();
        }
      });
      for (const name of Object.keys(perImage[0]!.losses)) {
        t.is(result.losses[name], (perImage[0]!.losses[name]! + perImage[1]!.losses[name]!) / 2, `mean ${name} of step ${i + 1}`);
      }
      const names = new Set([...perImage[0]!.grads.keys(), ...perImage[1]!.grads.keys()]);
      const mean = new Map<string, tf.Tensor>();
      for (const name of names) {
        // A gradient missing on one image counts as zero there.
        const present = perImage.map(({ grads }) => grads.get(name)).filter((grad) => grad !== undefined);
        const sum = present.length === 1 ? present[0]! : tf.add(present[0]!, present[1]!);
        mean.set(name, tf.div(sum, 2));
        if (sum !== present[0]) sum.dispose();
      }
      const gradNorm = applyGradients(reference, mean, sgd, lr, 35);
      t.is(result.gradNorm, gradNorm, `gradient norm of step ${i + 1}`);
      tf.dispose([...mean.values(), ...perImage.flatMap(({ grads }) => [...grads.values()])]);
    }
    states = await trainer.replicaStates();
    await trainer.copyStateTo(replicated);
  } finally {
    await trainer.close();
  }

  const parameters = stateOf(reference, false);
  t.true(parameters.size > 0);
  for (const [name, expected] of parameters) {
    t.deepEqual(Array.from(states[0]!.get(name)!), expected, `replica 0 ${name}`);
    t.deepEqual(Array.from(states[1]!.get(name)!), expected, `replica 1 ${name}`);
  }
  // Batch-norm running statistics follow each replica's own images, and the main copy takes replica 0's.
  const buffers = replicated.namedBuffers();
  t.true(buffers.some(([name]) => name.endsWith('running_mean')));
  for (const [name, variable] of buffers) t.deepEqual(Array.from(variable.dataSync()), Array.from(states[0]!.get(name)!), name);
  t.true(buffers.some(([name]) => states[0]!.get(name)!.some((value, k) => value !== states[1]!.get(name)![k])));

  // Every worker's tensor count stays flat from step to step.
  for (const counts of workerTensors) t.deepEqual(counts, workerTensors[0], `tensor counts ${JSON.stringify(workerTensors)}`);
  t.true(workerTensors[0]!.every((count) => count > 0));
  t.is(countLiveWorkers(), 0);
  sgd.disposeState();
  reference.dispose();
  replicated.dispose();
});

function runnerConfig(maxEpochs: number, model: DetectionConfig['model'] = baseConfig.model): DetectionConfig {
  return {
    ...baseConfig,
    model,
    runner: { type: 'EpochBasedRunner', maxEpochs, workers: 2 },
    lrConfig: { policy: 'step', warmup: 'linear', warmupIters: 3, warmupRatio: 0.1, step: [2] },
    logConfig: { interval: 1 },
  };
}

async function train(config: DetectionConfig, workDir: string, resumeFrom?: string, workerImports?: string[]) {
  setInitSeed(5);
  const model = buildDetector(config.model);
  const loader = buildLoader(buildDataset(config.data.train, 'data.train'), config.data, 'train', 0);
  try {
    const summary = await runTraining({
      model,
      config,
      workDir,
      trainLoader: { numBatches: loader.numBatches(0), batchSize: loader.batchSize, epoch: (epoch) => loader.iterate(epoch) },
      ...(resumeFrom === undefined ? {} : { resumeFrom }),
      ...(workerImports === undefined ? {} : { workerImports }),
    });
    return { summary, state: stateOf(model, true) };
  } finally {
    await loader.close();
    model.dispose();
  }
}

interface TrainRecord {
  globalIter: number;
  loss: number;
  numTensors: number;
  workerTensors: number[];
}

function trainRecords(workDir: string): TrainRecord[] {
  return readFileSync(join(workDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as TrainRecord & { mode: string })
    .filter((record) => record.mode === 'train');
}

test.serial('resume with two workers continues exactly', async (t) => {
  const straightDir = mkdtempSync(join(tmpdir(), 'rladet-parallel-straight-'));
  const straight = await train(runnerConfig(3), straightDir);
  const resumedDir = mkdtempSync(join(tmpdir(), 'rladet-parallel-resumed-'));
  await train(runnerConfig(1), resumedDir);
  const resumed = await train(runnerConfig(3), resumedDir, 'latest');

  t.is(resumed.summary.iterations, 3);
  for (const [name, values] of straight.state) t.deepEqual(resumed.state.get(name), values, name);
  const losses = (dir: string) => trainRecords(dir).map((record) => [record.globalIter, record.loss]);
  t.deepEqual(losses(resumedDir), losses(straightDir));
  const records = trainRecords(straightDir);
  t.deepEqual(
    records.map((record) => record.workerTensors.length),
    [2, 2, 2],
  );
  t.is(countLiveWorkers(), 0);
});

function faultyModel(fault: Fault): DetectionConfig['model'] {
  return { ...baseConfig.model, type: 'FaultyRetinaNet', fault } as unknown as DetectionConfig['model'];
}

test.serial('worker error stops training', async (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'rladet-parallel-throw-'));
  const config = runnerConfig(3, faultyModel({ kind: 'throw', worker: 1, call: 2 }));
  const error = await t.throwsAsync(train(config, workDir, undefined, [FAULTS_MODULE]), { instanceOf: RladetError });
  t.is(error!.message, 'training worker 1 failed while computing gradients at iteration 2: Error: injected failure in call 2');
  t.true(existsSync(join(workDir, 'epoch_1.safetensors')));
  t.false(existsSync(join(workDir, 'epoch_2.safetensors')));
  t.is(countLiveWorkers(), 0);
});

test.serial('worker exit stops training', async (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'rladet-parallel-exit-'));
  const config = runnerConfig(3, faultyModel({ kind: 'exit', worker: 0, call: 1 }));
  const error = await t.throwsAsync(train(config, workDir, undefined, [FAULTS_MODULE]), { instanceOf: RladetError });
  t.is(error!.message, 'training worker 0 exited with code 3 while computing gradients at iteration 1');
  t.is(countLiveWorkers(), 0);
});

test.serial('uncaught worker error stops training', async (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'rladet-parallel-uncaught-'));
  const config = runnerConfig(3, faultyModel({ kind: 'uncaught', worker: 1, call: 1 }));
  const error = await t.throwsAsync(train(config, workDir, undefined, [FAULTS_MODULE]), { instanceOf: RladetError });
  t.is(error!.message, 'training worker 1 crashed while computing gradients at iteration 1: Error: uncaught failure');
  t.is(countLiveWorkers(), 0);
});

test.serial('NaN loss in a worker stops training', async (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'rladet-parallel-nan-'));
  const config = runnerConfig(3, faultyModel({ kind: 'nan', worker: 1, call: 2 }));
  const error = await t.throwsAsync(train(config, workDir, undefined, [FAULTS_MODULE]), { instanceOf: NonFiniteLossError });
  t.is(error!.iteration, 2);
  t.regex(error!.message, /^loss is not finite at iteration 2 in worker 1 \(loss_cls=NaN, loss_bbox=[0-9.e-]+, loss=NaN\); parameters were not updated\./);
  t.is(countLiveWorkers(), 0);
});

test.serial('worker startup failure names worker', async (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'rladet-parallel-start-'));
  const missing = new URL('./no_such_module.ts', import.meta.url).href;
  const error = await t.throwsAsync(train(runnerConfig(1), workDir, undefined, [missing]), { instanceOf: RladetError });
  t.regex(error!.message, /^training worker [01] failed while starting: Error: Cannot find module '.*no_such_module\.ts'/);
  t.is(countLiveWorkers(), 0);
});

test('train tool documents --workers', (t) => {
  const { status, stdout } = runTool('train.ts', ['--help']);
  t.is(status, 0);
  t.regex(stdout, /--workers N\|auto +train data-parallel in N worker threads/);
});

test('train tool rejects bad --workers', (t) => {
  const { status, stderr } = runTool('train.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', '--workers', '0']);
  t.is(status, 2);
  t.true(stderr.startsWith("error: --workers: expected a positive integer or 'auto', got '0'"), stderr);
});

test('train tool passes --workers to runner', (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'rladet-parallel-cli-'));
  const { status, stderr } = runTool('train.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', '--work-dir', workDir, '--backend', 'cpu', '--workers', '3']);
  t.is(status, 1);
  t.true(
    stderr.includes('ConfigError: runner.workers: 3 workers need at least 3 images per batch, but data.imagesPerBatch is 2. Use at most 2 workers or a larger batch.'),
    stderr,
  );
  t.is(JSON.parse(readFileSync(join(workDir, 'config.json'), 'utf8')).runner.workers, 3);
});
