import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Worker } from 'node:worker_threads';

import {
  allocateSyncBatchNormBuffers,
  listSyncBatchNorms,
  SharedMemorySyncGroup,
  type SyncBatchNormSetup,
} from '../../../src/engine/parallel/sync_batch_norm_group.ts';
import '../../../src/backends/register_gradients.ts';
import { BatchNorm2d } from '../../../src/nn/layers.ts';
import { setBatchNormSyncGroup, SyncBatchNorm2d } from '../../../src/nn/sync_batch_norm.ts';
import { RladetError } from '../../../src/utils/errors.ts';
import { randomValues, relativeError } from '../backends/backend_helpers.ts';
import type { ReplicaInput, ReplicaOutput } from './sync_batch_norm_replica.ts';
import { NormPair } from './sync_batch_norm_model.ts';

type Shape4D = [number, number, number, number];

const EPS = 1e-5;
const TOLERANCE = 1e-4;

test.before(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

/** Inputs of one normalisation case: x offset from zero (so a wrong mean shows), upstream gradient, scale, shift. */
function caseValues(shape: Shape4D, seed: number) {
  const size = shape.reduce((a, b) => a * b);
  const channels = shape[3];
  return {
    x: randomValues(size, seed).map((v) => 3 * v + 5),
    upstream: randomValues(size, seed + 1),
    weight: randomValues(channels, seed + 2).map((v) => v + 1.5),
    bias: randomValues(channels, seed + 3),
  };
}

interface NormResult {
  output: Float32Array;
  dx: Float32Array;
  dWeight: Float32Array;
  dBias: Float32Array;
  runningMean: Float32Array;
  runningVar: Float32Array;
}

/** Runs `layer` in training mode once and returns its output, the gradients of sum(output * upstream) and its running statistics. */
function trainOnce(layer: BatchNorm2d, shape: Shape4D, values: ReturnType<typeof caseValues>): NormResult {
  tf.tidy(() => {
    layer.weight.assign(tf.tensor1d(values.weight));
    layer.bias.assign(tf.tensor1d(values.bias));
  });
  const initial = tf.tensor4d(values.x, shape);
  const x = tf.variable(initial);
  initial.dispose();
  const upstream = tf.tensor4d(values.upstream, shape);
  let output: tf.Tensor | undefined;
  const { value, grads } = tf.variableGrads(() => {
    output = tf.keep(layer.forward(x as tf.Tensor4D));
    return tf.sum(tf.mul(output, upstream)) as tf.Scalar;
  }, [x, layer.weight, layer.bias]);
  const read = (tensor: tf.Tensor) => Float32Array.from(tensor.dataSync());
  const result = {
    output: read(output!),
    dx: read(grads[x.name]!),
    dWeight: read(grads[layer.weight.name]!),
    dBias: read(grads[layer.bias.name]!),
    runningMean: read(layer.runningMean),
    runningVar: read(layer.runningVar),
  };
  tf.dispose([value, output!, x, upstream, ...Object.values(grads)]);
  return result;
}

/**
 * Batch norm through tf.moments and tf.batchNorm, differentiated by autodiff, with PyTorch's
 * running-statistics update (momentum 0.1, unbiased variance) from the initial 0 and 1.
 */
function referenceBatchNorm(shape: Shape4D, values: ReturnType<typeof caseValues>): NormResult {
  let result: NormResult | undefined;
  tf.tidy(() => {
    result = referenceBatchNormTensors(shape, values);
  });
  return result!;
}

function referenceBatchNormTensors(shape: Shape4D, values: ReturnType<typeof caseValues>): NormResult {
  const x = tf.tensor4d(values.x, shape);
  const weight = tf.tensor1d(values.weight);
  const bias = tf.tensor1d(values.bias);
  const upstream = tf.tensor4d(values.upstream, shape);
  const normalize = (input: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor) => {
    const { mean, variance } = tf.moments(input, [0, 1, 2]);
    return tf.batchNorm4d(input as tf.Tensor4D, mean as tf.Tensor1D, variance as tf.Tensor1D, shift as tf.Tensor1D, scale as tf.Tensor1D, EPS);
  };
  const [dx, dWeight, dBias] = tf.grads((input: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor) => tf.sum(tf.mul(normalize(input, scale, shift), upstream)))([
    x,
    weight,
    bias,
  ]);
  const output = normalize(x, weight, bias);
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  const count = shape[0] * shape[1] * shape[2];
  const runningMean = tf.mul(mean, 0.1);
  const runningVar = tf.add(0.9, tf.mul(variance, (0.1 * count) / (count - 1)));
  const read = (tensor: tf.Tensor) => Float32Array.from(tensor.dataSync());
  return {
    output: read(output),
    dx: read(dx!),
    dWeight: read(dWeight!),
    dBias: read(dBias!),
    runningMean: read(runningMean),
    runningVar: read(runningVar),
  };
}

function setupFor(model: NormPair, workers: number, timeoutSeconds = 30): SyncBatchNormSetup {
  const layers = listSyncBatchNorms(model);
  return { layers, buffers: allocateSyncBatchNormBuffers(layers, workers), timeoutSeconds };
}

const SHAPES: Shape4D[] = [
  [2, 7, 5, 16],
  [1, 9, 11, 8],
  [3, 1, 2, 4],
];

test.serial('SyncBN without a group equals BN', (t) => {
  const before = tf.memory().numTensors;
  for (const [index, shape] of SHAPES.entries()) {
    const values = caseValues(shape, 10 * index);
    const plain = new BatchNorm2d(shape[3]);
    const synced = new SyncBatchNorm2d(shape[3]);
    t.deepEqual([...synced.stateDict().keys()], [...plain.stateDict().keys()]);
    t.deepEqual(trainOnce(synced, shape, values), trainOnce(plain, shape, values), `[${shape}] training`);

    // Inference uses the running statistics, the same in both after the same step.
    const x = tf.tensor4d(values.x, shape);
    const inference = [plain, synced].map((layer) => {
      layer.eval();
      return tf.tidy(() => Array.from(layer.forward(x).dataSync()));
    });
    t.deepEqual(inference[1], inference[0], `[${shape}] inference`);
    x.dispose();
    plain.dispose();
    synced.dispose();
  }
  t.is(tf.memory().numTensors, before);
});

test.serial('one-replica SyncBN matches autodiff', (t) => {
  const before = tf.memory().numTensors;
  for (const [index, shape] of SHAPES.entries()) {
    const values = caseValues(shape, 10 * index);
    const model = new NormPair(shape[3]);
    const group = new SharedMemorySyncGroup(model, 0, 1, setupFor(model, 1));
    group.beginStep(1);
    const previous = setBatchNormSyncGroup(group);
    let actual: NormResult;
    try {
      actual = trainOnce(model.first, shape, values);
    } finally {
      setBatchNormSyncGroup(previous);
    }
    const expected = referenceBatchNorm(shape, values);
    for (const key of Object.keys(expected) as Array<keyof NormResult>) {
      const error = relativeError(actual[key], expected[key]);
      t.true(error < TOLERANCE, `[${shape}] ${key}: relative error ${error}`);
    }
    model.dispose();
  }
  t.is(tf.memory().numTensors, before);
});

/** Runs one replica per shard in worker threads, all joined to one SyncBN group, and returns their outputs in replica order. */
async function runReplicas(
  shards: Shape4D[],
  values: ReturnType<typeof caseValues>,
  orders: Array<ReplicaInput['order']>,
): Promise<ReplicaOutput[]> {
  const channels = shards[0]![3];
  const model = new NormPair(channels);
  const setup = setupFor(model, shards.length);
  model.dispose();
  let start = 0;
  const replies = shards.map((shape, index) => {
    const size = shape.reduce((a, b) => a * b);
    const input: ReplicaInput = {
      index,
      workers: shards.length,
      setup,
      shape,
      x: values.x.slice(start, start + size),
      upstream: values.upstream.slice(start, start + size),
      weight: values.weight,
      bias: values.bias,
      order: orders[index]!,
    };
    start += size;
    const worker = new Worker(new URL('./sync_batch_norm_replica_entry.mjs', import.meta.url), { workerData: input });
    return new Promise<ReplicaOutput>((resolve, reject) => {
      worker.once('message', (output: ReplicaOutput) => {
        resolve(output);
        void worker.terminate();
      });
      worker.once('error', reject);
    });
  });
  return Promise.all(replies);
}

function concat(parts: Float32Array[]): Float32Array {
  const result = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    result.set(part, offset);
    offset += part.length;
  }
  return result;
}

test('SyncBN on uneven threads matches whole batch', async (t) => {
  // Two replicas with 2 and 1 images, and three replicas with one image each.
  const cases: Array<{ whole: Shape4D; shards: Shape4D[] }> = [
    { whole: [3, 5, 4, 6], shards: [[2, 5, 4, 6], [1, 5, 4, 6]] },
    { whole: [3, 3, 2, 5], shards: [[1, 3, 2, 5], [1, 3, 2, 5], [1, 3, 2, 5]] },
  ];
  for (const [index, { whole, shards }] of cases.entries()) {
    const values = caseValues(whole, 100 + index);
    const outputs = await runReplicas(shards, values, shards.map(() => ['first']));
    const replicas = outputs.map((output) => {
      if (!output.ok) throw new Error(output.message);
      return output;
    });
    const expected = referenceBatchNorm(whole, values);
    const label = `[${shards.map((shape) => shape[0]).join('+')}] images`;

    const checks: Array<[string, Float32Array, Float32Array]> = [
      ['output', concat(replicas.map((replica) => replica.output)), expected.output],
      ['dx', concat(replicas.map((replica) => replica.dx)), expected.dx],
      // Each replica's weight and bias gradients are its own sums, which add up to the whole batch's.
      ['dweight', replicas.map((replica) => replica.grads['first.weight']!).reduce((sum, grad) => sum.map((v, k) => v + grad[k]!)), expected.dWeight],
      ['dbias', replicas.map((replica) => replica.grads['first.bias']!).reduce((sum, grad) => sum.map((v, k) => v + grad[k]!)), expected.dBias],
      ['running mean', replicas[0]!.buffers['first.running_mean']!, expected.runningMean],
      ['running var', replicas[0]!.buffers['first.running_var']!, expected.runningVar],
    ];
    for (const [name, actual, reference] of checks) {
      const error = relativeError(actual, reference);
      t.true(error < TOLERANCE, `${label} ${name}: relative error ${error}`);
    }
    for (const replica of replicas.slice(1)) {
      t.deepEqual(replica.buffers, replicas[0]!.buffers, `${label}: running statistics identical in every replica`);
    }
  }
});

test('SyncBN replicas out of step fail', async (t) => {
  const shape: Shape4D = [1, 2, 2, 3];
  const values = caseValues([2, 2, 2, 3], 7);
  const outputs = await runReplicas([shape, shape], values, [
    ['first', 'second'],
    ['second', 'first'],
  ]);
  const expected =
    "SyncBN replicas are out of step at exchange 1 of this step: training worker 0 is at 'first' (forward) but training worker 1 is at 'second' (forward). " +
    'Every replica must run the same SyncBN layers in the same order, so the model and the layers that the loss depends on must not vary between workers.';
  t.deepEqual(outputs[0], { ok: false, message: expected });
  t.deepEqual(outputs[1], {
    ok: false,
    message: expected.replace("worker 0 is at 'first' (forward) but training worker 1 is at 'second'", "worker 1 is at 'second' (forward) but training worker 0 is at 'first'"),
  });
});

test.serial('SyncBN barrier times out naming worker', (t) => {
  const model = new NormPair(3);
  const group = new SharedMemorySyncGroup(model, 0, 2, setupFor(model, 2, 0.2));
  group.beginStep(2);
  const previous = setBatchNormSyncGroup(group);
  const started = performance.now();
  try {
    const x = tf.tensor4d(caseValues([1, 2, 2, 3], 3).x, [1, 2, 2, 3]);
    const error = t.throws(() => tf.tidy(() => model.first.forward(x)), { instanceOf: RladetError });
    t.is(
      error!.message,
      "SyncBN layer 'first' (forward) timed out after 0.2 s at exchange 1 of this step, waiting for training worker 1 " +
        '(it has not reached a SyncBN exchange in this step). A worker that does not arrive has failed or is stuck.',
    );
    x.dispose();
  } finally {
    setBatchNormSyncGroup(previous);
  }
  const seconds = (performance.now() - started) / 1000;
  t.true(seconds >= 0.2 && seconds < 5, `waited ${seconds} s`);
  model.dispose();
});

test.serial('SyncBN group rejects another model', (t) => {
  const model = new NormPair(3);
  const other = new NormPair(4);
  const error = t.throws(() => new SharedMemorySyncGroup(other, 1, 2, setupFor(model, 2)), { instanceOf: RladetError });
  t.is(
    error!.message,
    "training worker 1: SyncBN layer 0 is 'first' with 4 channels but the main thread's model has 'first' with 3 channels, " +
      "so the worker must build the same model (same config and the same imported modules)",
  );
  model.dispose();
  other.dispose();
});

test.serial('SyncBN rejects idle replica', (t) => {
  const model = new NormPair(3);
  const group = new SharedMemorySyncGroup(model, 1, 2, setupFor(model, 2));
  group.beginStep(1);
  const previous = setBatchNormSyncGroup(group);
  try {
    const x = tf.tensor4d(caseValues([1, 2, 2, 3], 3).x, [1, 2, 2, 3]);
    const error = t.throws(() => tf.tidy(() => model.first.forward(x)), { instanceOf: RladetError });
    t.is(error!.message, "training worker 1: SyncBN layer 'first' ran in a step in which this worker has no images");
    x.dispose();
  } finally {
    setBatchNormSyncGroup(previous);
  }
  model.dispose();
});
