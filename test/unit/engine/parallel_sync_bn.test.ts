import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import '../../../src/backends/register_gradients.ts';
import { SGD } from '../../../src/engine/optimizer.ts';
import { countLiveWorkers, ParallelTrainer } from '../../../src/engine/parallel/parallel_trainer.ts';
import { applyGradients, type Batch } from '../../../src/engine/train_step.ts';
import type { GroundTruth, ImageMeta } from '../../../src/models/types.ts';
import { setInitSeed } from '../../../src/nn/init.ts';
import { RladetError } from '../../../src/utils/errors.ts';
import { SyncBnToyDetector, type SyncBnToyOptions } from './sync_bn_toy_detector.ts';

/**
 * Data-parallel steps of a toy detector with SyncBN on the cpu backend, against the same steps
 * in this thread with batch norm over the whole batch.
 */

const TOY_MODULE = new URL('./sync_bn_toy_detector.ts', import.meta.url).href;
const OPTIMIZER = { type: 'SGD', lr: 0, momentum: 0.9, weightDecay: 0.01 };
const CLIP = 5;
/** Images per step: 3 images split 2 + 1, then 1 image (worker 1 idle), then 3 again. */
const STEPS = [
  { images: 3, lr: 0.05 },
  { images: 1, lr: 0.1 },
  { images: 3, lr: 0.1 },
];
// The replicas normalise with statistics summed in float64 over the workers, and the reference
// with tf.moments in float32, so the weights after three steps differ by float32 rounding only.
const TOLERANCE = 1e-5;

function meta(imageId: number): ImageMeta {
  return { imageId, originalShape: [4, 5], imageShape: [4, 5], padShape: [4, 5], scaleFactor: [1, 1], flipped: false, filePath: `${imageId}.jpg` };
}

function target(): GroundTruth {
  return { boxes: new Float32Array([0, 0, 2, 2]), labels: new Int32Array([0]) };
}

/** `count` 4x5 images with channel means far from zero, so that a wrong mean shows. */
function makeBatch(step: number, count: number): Batch {
  const values = new Float32Array(count * 4 * 5 * 3).map((_, i) => 2 + Math.sin(i * 0.37 + step) * (1 + (i % 3)));
  return {
    images: tf.tensor4d(values, [count, 4, 5, 3]),
    metas: Array.from({ length: count }, (_, i) => meta(i + 1)),
    targets: Array.from({ length: count }, () => target()),
  };
}

/**
 * Computes the gradients of the data-parallel objective in one thread: batch norm over the whole
 * batch, then the mean over the shards of each shard's loss (2 + 1 images, or the single image).
 */
function referenceGradients(model: SyncBnToyDetector, images: tf.Tensor4D): Map<string, tf.Tensor> {
  const shards = images.shape[0] === 3 ? [[0, 2], [2, 1]] : [[0, 1]];
  const trainable = model.trainableParameters();
  const { value, grads } = tf.variableGrads(() => {
    const features = model.features(images);
    const losses = shards.map(([start, size]) =>
      model.lossOf(tf.slice(features, [start!, 0, 0, 0], [size!, -1, -1, -1]), tf.slice(images, [start!, 0, 0, 0], [size!, -1, -1, -1])),
    );
    return tf.div(tf.addN(losses), shards.length) as tf.Scalar;
  }, trainable.map(([, variable]) => variable));
  value.dispose();
  const nameOf = new Map(trainable.map(([name, variable]) => [variable.name, name]));
  return new Map(Object.entries(grads).map(([variableName, grad]) => [nameOf.get(variableName)!, grad]));
}

function startTrainer(model: SyncBnToyDetector, options: SyncBnToyOptions, timeoutSeconds?: number): Promise<ParallelTrainer> {
  return ParallelTrainer.start(model, undefined, {
    workers: 2,
    backend: 'cpu',
    model: { type: 'SyncBnToyDetector', ...options },
    optimizer: OPTIMIZER,
    imports: [TOY_MODULE],
    ...(timeoutSeconds === undefined ? {} : { syncBatchNormTimeoutSeconds: timeoutSeconds }),
  });
}

function maxRelativeDifference(actual: Float32Array, expected: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)));
  return worst;
}

test.serial('SyncBN workers match whole-batch BN', async (t) => {
  await tf.setBackend('cpu');
  const before = tf.memory().numTensors;
  setInitSeed(21);
  const reference = new SyncBnToyDetector({ norm: 'BN' });
  setInitSeed(21);
  const replicated = new SyncBnToyDetector({ norm: 'SyncBN' });
  const sgd = new SGD(OPTIMIZER);
  const trainer = await startTrainer(replicated, { norm: 'SyncBN' });
  const workerTensors: number[][] = [];
  let states: Array<Map<string, Float32Array>>;
  try {
    for (const [i, { images, lr }] of STEPS.entries()) {
      const batch = makeBatch(i, images);
      const result = await trainer.step(batch, lr, i + 1, CLIP);
      t.deepEqual(result.shardSizes, images === 3 ? [2, 1] : [1, 0]);
      workerTensors.push(result.workerTensors);

      const grads = referenceGradients(reference, batch.images);
      const gradNorm = applyGradients(reference, grads, sgd, lr, CLIP);
      t.true(Math.abs(result.gradNorm! - gradNorm!) <= TOLERANCE * gradNorm!, `gradient norm of step ${i + 1}: ${result.gradNorm} against ${gradNorm}`);
      tf.dispose([batch.images, ...grads.values()]);
    }
    states = await trainer.replicaStates();
    await trainer.copyStateTo(replicated);
  } finally {
    await trainer.close();
  }

  const expected = reference.stateDict();
  t.deepEqual([...states[0]!.keys()].sort(), [...expected.keys()].sort());
  for (const [name, variable] of expected) {
    const difference = maxRelativeDifference(states[0]!.get(name)!, Float32Array.from(variable.dataSync()));
    t.true(difference <= TOLERANCE, `${name}: relative difference ${difference}`);
    t.deepEqual(states[1]!.get(name), states[0]!.get(name), `${name} identical in both replicas`);
  }
  // Three training forwards moved the running statistics away from their initial 0 and 1.
  t.notDeepEqual(Array.from(states[0]!.get('norm.running_mean')!), [0, 0, 0, 0]);
  t.deepEqual(Array.from(replicated.norm.runningVar.dataSync()), Array.from(states[0]!.get('norm.running_var')!));

  for (const counts of workerTensors) t.deepEqual(counts, workerTensors[0], `worker tensor counts ${JSON.stringify(workerTensors)}`);
  sgd.disposeState();
  reference.dispose();
  replicated.dispose();
  t.is(tf.memory().numTensors, before);
  t.is(countLiveWorkers(), 0);
});

test.serial('dead worker stops SyncBN step', async (t) => {
  await tf.setBackend('cpu');
  const options: SyncBnToyOptions = { norm: 'SyncBN', fault: { kind: 'exit', worker: 1 } };
  const model = new SyncBnToyDetector(options);
  const trainer = await startTrainer(model, options);
  const batch = makeBatch(0, 2);
  const started = performance.now();
  try {
    // Worker 0 waits at the backward exchange of the batch norm while worker 1 exits.
    const error = await t.throwsAsync(trainer.step(batch, 0.1, 1), { instanceOf: RladetError });
    t.is(error!.message, 'training worker 1 exited with code 3 while computing gradients at iteration 1');
  } finally {
    await trainer.close();
    batch.images.dispose();
    model.dispose();
  }
  t.true(performance.now() - started < 30_000);
  t.is(countLiveWorkers(), 0);
});

test.serial('stuck worker times out SyncBN barrier', async (t) => {
  await tf.setBackend('cpu');
  const options: SyncBnToyOptions = { norm: 'SyncBN', fault: { kind: 'hang', worker: 1 } };
  const model = new SyncBnToyDetector(options);
  const trainer = await startTrainer(model, options, 1);
  const batch = makeBatch(0, 2);
  const started = performance.now();
  try {
    const error = await t.throwsAsync(trainer.step(batch, 0.1, 1), { instanceOf: RladetError });
    t.is(
      error!.message,
      "training worker 0 failed while computing gradients at iteration 1: RladetError: SyncBN layer 'norm' (backward) timed out after 1 s " +
        "at exchange 2 of this step, waiting for training worker 1 (its latest exchange is 1, at 'norm' (forward)). " +
        'A worker that does not arrive has failed or is stuck.',
    );
  } finally {
    await trainer.close();
    batch.images.dispose();
    model.dispose();
  }
  // Closing the trainer terminated worker 1, which was still blocked for a minute.
  t.true(performance.now() - started < 30_000);
  t.is(countLiveWorkers(), 0);
});
