import * as tf from '@tensorflow/tfjs-core';
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildDataset, buildDetector, buildLoader } from '../../src/apis/build.ts';
import { initBackend } from '../../src/backends/index.ts';
import type { DetectionConfig } from '../../src/config/detection_config.ts';
import { readCheckpoint } from '../../src/engine/checkpoint.ts';
import { runTraining, type TrainLoader } from '../../src/engine/runner.ts';
import type { Detector, GroundTruth, ImageMeta, LossDict } from '../../src/models/types.ts';
import { setInitSeed } from '../../src/nn/init.ts';
import { CheckpointError, NonFiniteLossError } from '../../src/utils/errors.ts';
import { tinyConfig, writeTwoPhotoSubset } from './tiny_setup.ts';

const annFile = writeTwoPhotoSubset(mkdtempSync(join(tmpdir(), 'rladet-runner-data-')));

function config(maxEpochs: number): DetectionConfig {
  const base = tinyConfig(annFile);
  return {
    ...base,
    runner: { type: 'EpochBasedRunner', maxEpochs },
    lrConfig: { policy: 'step', warmup: 'linear', warmupIters: 3, warmupRatio: 0.1, step: [2] },
    logConfig: { interval: 1 },
  };
}

/** The two-photo loader as the runner sees it (one batch per epoch). */
function trainLoaderFor(cfg: DetectionConfig): { loader: TrainLoader; close: () => Promise<void> } {
  const dataset = buildDataset(cfg.data.train, 'data.train');
  const loader = buildLoader(dataset, cfg.data, 'train', 0);
  return {
    loader: { numBatches: loader.numBatches(0), batchSize: loader.batchSize, epoch: (epoch) => loader.iterate(epoch) },
    close: () => loader.close(),
  };
}

async function train(cfg: DetectionConfig, workDir: string, resumeFrom?: string, wrap?: (model: Detector) => Detector) {
  setInitSeed(5);
  const model = buildDetector(cfg.model);
  const { loader, close } = trainLoaderFor(cfg);
  try {
    const summary = await runTraining({
      model: wrap === undefined ? model : wrap(model),
      config: cfg,
      workDir,
      trainLoader: loader,
      ...(resumeFrom === undefined ? {} : { resumeFrom }),
    });
    return { summary, state: new Map([...model.stateDict()].map(([name, v]) => [name, Array.from(v.dataSync())])) };
  } finally {
    await close();
    model.dispose();
  }
}

test.before(async () => {
  await initBackend('wasm');
});

test.serial('resume continues exactly where it stopped', async (t) => {
  const straightDir = mkdtempSync(join(tmpdir(), 'rladet-straight-'));
  const straight = await train(config(3), straightDir);
  const resumedDir = mkdtempSync(join(tmpdir(), 'rladet-resumed-'));
  await train(config(1), resumedDir);
  t.deepEqual(readdirSync(resumedDir).filter((name) => name.endsWith('.safetensors')), ['epoch_1.safetensors']);
  const resumed = await train(config(3), resumedDir, 'latest');
  t.is(resumed.summary.iterations, straight.summary.iterations);
  for (const [name, values] of straight.state) t.deepEqual(resumed.state.get(name), values, name);

  // The lr logged after the resume is the one the uninterrupted run used at that iteration.
  const records = (dir: string) =>
    readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { globalIter: number; lr: number });
  const lrByIteration = (dir: string) => records(dir).map((r) => [r.globalIter, r.lr]);
  t.deepEqual(lrByIteration(resumedDir), lrByIteration(straightDir));
  t.deepEqual(
    lrByIteration(straightDir).map(([iteration]) => iteration),
    [1, 2, 3],
  );
  const meta = (await readCheckpoint(join(resumedDir, 'epoch_3.safetensors'))).meta;
  t.is(meta.epoch, 3);
  t.is(meta.iteration, 3);
});

test.serial('NaN loss stops training and keeps last checkpoint', async (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'rladet-nan-'));
  // Iteration 3 (the first of epoch 3) gets a NaN loss.
  let calls = 0;
  const poison = (model: Detector): Detector =>
    Object.assign(Object.create(model) as Detector, {
      loss(images: tf.Tensor4D, metas: ImageMeta[], targets: GroundTruth[]): LossDict {
        calls += 1;
        const losses = model.loss(images, metas, targets);
        if (calls !== 3) return losses;
        const poisoned = tf.mul(losses['loss_cls']!, NaN) as tf.Scalar;
        losses['loss_cls']!.dispose();
        return { ...losses, loss_cls: poisoned };
      },
    });
  const error = await t.throwsAsync(train(config(4), workDir, undefined, poison), { instanceOf: NonFiniteLossError });
  t.is(error!.iteration, 3);
  t.regex(error!.message, /^loss is not finite at iteration 3 \(loss_cls=NaN, loss_bbox=[0-9.e-]+, loss=NaN\); parameters were not updated\./);
  t.deepEqual(readdirSync(workDir).filter((name) => name.endsWith('.safetensors')).sort(), ['epoch_1.safetensors', 'epoch_2.safetensors']);
  t.is((await readCheckpoint(join(workDir, 'epoch_2.safetensors'))).meta.iteration, 2);
  t.false(readdirSync(workDir).some((name) => name.includes('.tmp-')), 'no temporary files left');
});

test.serial('resume from truncated checkpoint names file', async (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'rladet-truncated-'));
  await train(config(1), workDir);
  const path = join(workDir, 'epoch_1.safetensors');
  const bytes = readFileSync(path);
  writeFileSync(path, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const error = await t.throwsAsync(train(config(2), workDir, 'latest'), { instanceOf: CheckpointError });
  t.true(error!.message.startsWith(`${path}: invalid safetensors file:`), error!.message);
  t.false(existsSync(join(workDir, 'epoch_2.safetensors')));
});
