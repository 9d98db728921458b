import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import { AdamW, SGD, type Optimizer } from '../../../src/engine/optimizer.ts';
import { countLiveWorkers, ParallelTrainer } from '../../../src/engine/parallel/parallel_trainer.ts';
import { applyGradients, computeGradients, type Batch } from '../../../src/engine/train_step.ts';
import type { GroundTruth, ImageMeta } from '../../../src/models/types.ts';
import { setInitSeed } from '../../../src/nn/init.ts';
import { ToyDetector } from './toy_detector.ts';

/** Data-parallel steps of a toy detector on the cpu backend, against the same steps done explicitly in this thread. */

const TOY_MODULE = new URL('./toy_detector.ts', import.meta.url).href;
const MODEL_CONFIG = { type: 'ToyDetector' };
const MOMENTUM_CONFIG = { type: 'SGD', lr: 0, momentum: 0.9 };
const LRS = [0.05, 0.1, 0.1];

function meta(imageId: number): ImageMeta {
  return { imageId, originalShape: [4, 5], imageShape: [4, 5], padShape: [4, 5], scaleFactor: [1, 1], flipped: false, filePath: `${imageId}.jpg` };
}

function target(label: number): GroundTruth {
  return { boxes: new Float32Array([0, 0, 2, 2]), labels: new Int32Array([label]) };
}

/** Three 4x5 images, of which only the first has a box of label 1. */
function makeBatch(step: number): Batch {
  const values = new Float32Array(3 * 4 * 5 * 3).map((_, i) => Math.sin(i * 0.37 + step));
  return { images: tf.tensor4d(values, [3, 4, 5, 3]), metas: [meta(1), meta(2), meta(3)], targets: [target(1), target(0), target(0)] };
}

/** Gradients of the images [start, end) of `batch`, their loss normalised within that shard. */
function shardGradients(model: ToyDetector, batch: Batch, start: number, end: number) {
  const images = tf.slice(batch.images, [start, 0, 0, 0], [end - start, -1, -1, -1]);
  try {
    return computeGradients(model, { images, metas: batch.metas.slice(start, end), targets: batch.targets.slice(start, end) });
  } finally {
    images.dispose();
  }
}

/** Runs `LRS.length` steps on 2 workers and the same steps explicitly, and returns both models and optimizers. */
async function trainBoth(t: import('ava').ExecutionContext, makeOptimizer: () => Optimizer) {
  setInitSeed(11);
  const reference = new ToyDetector();
  const referenceOptimizer = makeOptimizer();
  setInitSeed(11);
  const replicated = new ToyDetector();
  const copiedOptimizer = makeOptimizer();
  const initialUnused = Array.from(reference.stateDict().get('unused')!.dataSync());
  const initialLabelScale = Array.from(reference.stateDict().get('label_scale')!.dataSync());
  const optimizerConfig = referenceOptimizer instanceof SGD ? { type: 'SGD', lr: 0, momentum: 0.9, weightDecay: 0.01 } : { type: 'AdamW', lr: 0, weightDecay: 0.01 };
  const trainer = await ParallelTrainer.start(replicated, undefined, { workers: 2, backend: 'cpu', model: MODEL_CONFIG, optimizer: optimizerConfig, imports: [TOY_MODULE] });
  let states: Array<Map<string, Float32Array>>;
  try {
    for (const [i, lr] of LRS.entries()) {
      const batch = makeBatch(i);
      const result = await trainer.step(batch, lr, i + 1, 0.5);
      t.deepEqual(result.shardSizes, [2, 1]);

      // Worker 0 trains on images 0 and 1, worker 1 on image 2. Only worker 0's shard has a label-1 box.
      const shards = [shardGradients(reference, batch, 0, 2), shardGradients(reference, batch, 2, 3)];
      t.is(result.losses['loss_main'], (shards[0]!.losses['loss_main']! + shards[1]!.losses['loss_main']!) / 2);
      t.false(shards[1]!.grads.has('label_scale'));
      t.false(shards[0]!.grads.has('unused'));
      const mean = new Map<string, tf.Tensor>();
      for (const [name, grad] of shards[0]!.grads) {
        const other = shards[1]!.grads.get(name);
        mean.set(name, tf.tidy(() => tf.div(other === undefined ? grad : tf.add(grad, other), 2)));
      }
      t.is(result.gradNorm, applyGradients(reference, mean, referenceOptimizer, lr, 0.5), `gradient norm of step ${i + 1}`);
      tf.dispose([batch.images, ...mean.values(), ...shards.flatMap(({ grads }) => [...grads.values()])]);
    }
    states = await trainer.replicaStates();
    await trainer.copyStateTo(replicated, copiedOptimizer);
  } finally {
    await trainer.close();
  }
  return { reference, referenceOptimizer, replicated, copiedOptimizer, states, initialUnused, initialLabelScale };
}

test.serial('cpu workers match explicit SGD steps', async (t) => {
  await tf.setBackend('cpu');
  const before = tf.memory().numTensors;
  const { reference, referenceOptimizer, replicated, copiedOptimizer, states, initialUnused, initialLabelScale } = await trainBoth(
    t,
    () => new SGD({ lr: 0, momentum: 0.9, weightDecay: 0.01 }),
  );

  for (const [name, variable] of reference.namedParameters()) {
    const expected = Array.from(variable.dataSync());
    t.deepEqual(Array.from(states[0]!.get(name)!), expected, `replica 0 ${name}`);
    t.deepEqual(Array.from(states[1]!.get(name)!), expected, `replica 1 ${name}`);
    t.deepEqual(Array.from(replicated.stateDict().get(name)!.dataSync()), expected, `main copy ${name}`);
  }
  // No worker produced a gradient for `unused`, so weight decay and momentum left it alone,
  // while `label_scale`, with a gradient from worker 0 only, was trained.
  t.deepEqual(Array.from(states[0]!.get('unused')!), initialUnused);
  t.notDeepEqual(Array.from(states[0]!.get('label_scale')!), initialLabelScale);

  // Each replica counts the images of its own shards, and the main copy takes replica 0's count.
  t.deepEqual(Array.from(states[0]!.get('images_seen')!), [6]);
  t.deepEqual(Array.from(states[1]!.get('images_seen')!), [3]);
  t.deepEqual(Array.from(replicated.stateDict().get('images_seen')!.dataSync()), [6]);

  const expectedMomentum = referenceOptimizer.stateTensors();
  t.deepEqual([...copiedOptimizer.stateTensors().keys()].sort(), [...expectedMomentum.keys()].sort());
  for (const [name, buffer] of copiedOptimizer.stateTensors()) {
    t.deepEqual(Array.from(buffer.dataSync()), Array.from(expectedMomentum.get(name)!.dataSync()), name);
  }

  referenceOptimizer.disposeState();
  copiedOptimizer.disposeState();
  reference.dispose();
  replicated.dispose();
  t.is(tf.memory().numTensors, before);
  t.is(countLiveWorkers(), 0);
});

test.serial('cpu workers match explicit AdamW steps', async (t) => {
  await tf.setBackend('cpu');
  const { reference, referenceOptimizer, replicated, copiedOptimizer, states } = await trainBoth(t, () => new AdamW({ lr: 0, weightDecay: 0.01 }));

  for (const [name, variable] of reference.namedParameters()) {
    t.deepEqual(Array.from(states[0]!.get(name)!), Array.from(variable.dataSync()), `replica 0 ${name}`);
  }
  t.deepEqual(copiedOptimizer.stateRecord(), referenceOptimizer.stateRecord());
  t.deepEqual(copiedOptimizer.stateRecord(), { 'step.weight': 3, 'step.bias': 3, 'step.label_scale': 3 });
  for (const [name, moment] of copiedOptimizer.stateTensors()) {
    t.deepEqual(Array.from(moment.dataSync()), Array.from(referenceOptimizer.stateTensors().get(name)!.dataSync()), name);
  }
  referenceOptimizer.disposeState();
  copiedOptimizer.disposeState();
  reference.dispose();
  replicated.dispose();
});

test.serial('broadcast state reaches every replica', async (t) => {
  await tf.setBackend('cpu');
  setInitSeed(3);
  const model = new ToyDetector();
  const optimizer = new SGD({ lr: 0, momentum: 0.9 });
  const referenceOptimizer = new SGD({ lr: 0, momentum: 0.9 });
  const copied = new SGD({ lr: 0, momentum: 0.9 });
  const trainer = await ParallelTrainer.start(model, undefined, { workers: 2, backend: 'cpu', model: MODEL_CONFIG, optimizer: MOMENTUM_CONFIG, imports: [TOY_MODULE] });
  try {
    // As on resume: new weights and a momentum buffer arrive after the start.
    model.stateDict().get('bias')!.assign(tf.tensor1d([0.25, -0.5]));
    const loaded = tf.tensor1d([1, 2]);
    optimizer.loadState(new Map([['momentum_buffer.bias', loaded]]));
    referenceOptimizer.loadState(new Map([['momentum_buffer.bias', loaded]]));
    loaded.dispose();
    await trainer.broadcastState(model, optimizer);
    const states = await trainer.replicaStates();
    t.deepEqual(Array.from(states[0]!.get('bias')!), [0.25, -0.5]);
    t.deepEqual(Array.from(states[1]!.get('bias')!), [0.25, -0.5]);

    // With lr 0 the weights stay, so the reference optimizer can follow the same steps on `model`.
    // Without weight decay, SGD's first momentum buffer starts as the gradient tensor itself,
    // and the second step must not find it changed.
    for (let step = 0; step < 2; step++) {
      const batch = makeBatch(step);
      const shards = [shardGradients(model, batch, 0, 2), shardGradients(model, batch, 2, 3)];
      const mean = new Map<string, tf.Tensor>();
      for (const [name, grad] of shards[0]!.grads) {
        const other = shards[1]!.grads.get(name);
        mean.set(name, tf.tidy(() => tf.div(other === undefined ? grad : tf.add(grad, other), 2)));
      }
      referenceOptimizer.step(new Map(model.trainableParameters()), mean, 0);
      tf.dispose([...mean.values(), ...shards.flatMap(({ grads }) => [...grads.values()])]);
      await trainer.step(batch, 0, step + 1);
      batch.images.dispose();
    }
    await trainer.copyStateTo(model, copied);
  } finally {
    await trainer.close();
  }
  const expected = referenceOptimizer.stateTensors();
  t.deepEqual([...copied.stateTensors().keys()].sort(), ['momentum_buffer.bias', 'momentum_buffer.label_scale', 'momentum_buffer.weight']);
  for (const [name, buffer] of copied.stateTensors()) t.deepEqual(Array.from(buffer.dataSync()), Array.from(expected.get(name)!.dataSync()), name);
  t.deepEqual(Array.from(model.stateDict().get('bias')!.dataSync()), [0.25, -0.5]);
  for (const sgd of [copied, optimizer, referenceOptimizer]) sgd.disposeState();
  model.dispose();
});
