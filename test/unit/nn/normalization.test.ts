import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import '../../../src/backends/register_gradients.ts';
import { registerWasmTrainingKernels } from '../../../src/backends/wasm_kernels.ts';
import { BatchNorm2d, GroupNorm } from '../../../src/nn/layers.ts';
import { batchNormTraining, groupNorm } from '../../../src/nn/normalization.ts';
import { liveCounts, outputsOn, randomValues, relativeError } from '../backends/backend_helpers.ts';

type Shape4D = [number, number, number, number];
type Normalize = (x: tf.Tensor4D, weight: tf.Tensor1D, bias: tf.Tensor1D) => tf.Tensor4D;

const EPS = 1e-5;
const TOLERANCE = 1e-4;
const OUTPUT_NAMES = ['output', 'dx', 'dweight', 'dbias'];

/** Batch norm with batch statistics through tf.moments and tf.batchNorm, differentiated by autodiff. */
const referenceBatchNorm: Normalize = (x, weight, bias) => {
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  return tf.batchNorm4d(x, mean as tf.Tensor1D, variance as tf.Tensor1D, bias, weight, EPS);
};

/** Group norm through tf.moments on [N, H*W, G, C/G], differentiated by autodiff. */
function referenceGroupNorm(numGroups: number): Normalize {
  return (x, weight, bias) => {
    const [n, h, w, c] = x.shape;
    const grouped = tf.reshape(x, [n, h * w, numGroups, c / numGroups]);
    const { mean, variance } = tf.moments(grouped, [1, 3], true);
    const normalised = tf.div(tf.sub(grouped, mean), tf.sqrt(tf.add(variance, EPS)));
    return tf.add(tf.mul(tf.reshape(normalised, x.shape), weight), bias) as tf.Tensor4D;
  };
}

const closedFormBatchNorm: Normalize = (x, weight, bias) => {
  const { output, mean, variance } = batchNormTraining(x, weight, bias, EPS);
  tf.dispose([mean, variance]);
  return output;
};

function closedFormGroupNorm(numGroups: number): Normalize {
  return (x, weight, bias) => groupNorm(x, numGroups, weight, bias, EPS);
}

/**
 * Returns a computation of the output of `normalize` and the gradients of sum(output * upstream)
 * for x, weight and bias. x is offset from zero, so a wrong mean shows.
 */
function outputAndGradients(normalize: Normalize, shape: Shape4D, seed: number): () => tf.Tensor[] {
  const size = shape.reduce((a, b) => a * b);
  const channels = shape[3];
  const xValues = randomValues(size, seed).map((v) => 3 * v + 5);
  const upstream = randomValues(size, seed + 1);
  const weightValues = randomValues(channels, seed + 2).map((v) => v + 1.5);
  const biasValues = randomValues(channels, seed + 3);
  return () => {
    const x = tf.tensor4d(xValues, shape);
    const weight = tf.tensor1d(weightValues);
    const bias = tf.tensor1d(biasValues);
    const loss = (input: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor) =>
      tf.sum(tf.mul(normalize(input as tf.Tensor4D, scale as tf.Tensor1D, shift as tf.Tensor1D), tf.tensor4d(upstream, shape)));
    return [normalize(x, weight, bias), ...tf.grads(loss)([x, weight, bias])];
  };
}

// Statistics over 4 and 3 elements are the smallest cases checked. Over 2 elements the true dx
// is zero up to eps (xhat is +-1), so both sides are rounding noise that no relative bound fits.
const BATCH_NORM_SHAPES: Shape4D[] = [
  [2, 7, 5, 16],
  [1, 9, 11, 8],
  [2, 1, 2, 4],
  [1, 3, 1, 3],
];

const GROUP_NORM_CASES: Array<{ shape: Shape4D; numGroups: number }> = [
  { shape: [2, 7, 5, 16], numGroups: 4 },
  { shape: [1, 9, 11, 8], numGroups: 1 },
  { shape: [2, 3, 5, 6], numGroups: 6 },
  { shape: [2, 4, 3, 8], numGroups: 2 },
];

test.before(async () => {
  registerWasmTrainingKernels();
  await tf.setBackend('cpu');
  await tf.ready();
});

test.serial('batch norm matches autodiff on cpu', async (t) => {
  for (const [index, shape] of BATCH_NORM_SHAPES.entries()) {
    const expected = await outputsOn('cpu', outputAndGradients(referenceBatchNorm, shape, 10 * index));
    const actual = await outputsOn('cpu', outputAndGradients(closedFormBatchNorm, shape, 10 * index));
    for (const [i, name] of OUTPUT_NAMES.entries()) {
      t.deepEqual(actual.shapes[i], expected.shapes[i], `[${shape}] ${name} shape`);
      const error = relativeError(actual.values[i]!, expected.values[i]!);
      t.true(error < TOLERANCE, `[${shape}] ${name}: relative error ${error}`);
    }
  }
});

test.serial('group norm matches autodiff on cpu', async (t) => {
  for (const [index, { shape, numGroups }] of GROUP_NORM_CASES.entries()) {
    const expected = await outputsOn('cpu', outputAndGradients(referenceGroupNorm(numGroups), shape, 10 * index));
    const actual = await outputsOn('cpu', outputAndGradients(closedFormGroupNorm(numGroups), shape, 10 * index));
    for (const [i, name] of OUTPUT_NAMES.entries()) {
      t.deepEqual(actual.shapes[i], expected.shapes[i], `[${shape}] ${numGroups} groups ${name} shape`);
      const error = relativeError(actual.values[i]!, expected.values[i]!);
      t.true(error < TOLERANCE, `[${shape}] ${numGroups} groups ${name}: relative error ${error}`);
    }
  }
});

test.serial('batch and group norm on wasm match cpu', async (t) => {
  const computations = [
    ...BATCH_NORM_SHAPES.map((shape, index) => ({ label: `batch norm [${shape}]`, compute: outputAndGradients(closedFormBatchNorm, shape, index) })),
    ...GROUP_NORM_CASES.map(({ shape, numGroups }, index) => ({
      label: `group norm [${shape}] ${numGroups} groups`,
      compute: outputAndGradients(closedFormGroupNorm(numGroups), shape, index),
    })),
  ];
  for (const { label, compute } of computations) {
    const expected = await outputsOn('cpu', compute);
    const actual = await outputsOn('wasm', compute);
    for (const [i, name] of OUTPUT_NAMES.entries()) {
      const error = relativeError(actual.values[i]!, expected.values[i]!);
      t.true(error < TOLERANCE, `${label} ${name}: relative error ${error}`);
    }
  }
});

test.serial('batch norm returns the batch statistics', async (t) => {
  await tf.setBackend('cpu');
  // Channel 0 contains 1..6 and channel 1 contains 10 * (1..6): mean 3.5 and 35, biased variance 35/12 and 3500/12.
  const values = [1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60];
  const x = tf.tensor4d(values, [2, 3, 1, 2]);
  const { output, mean, variance, count } = batchNormTraining(x, tf.ones([2]), tf.zeros([2]), EPS);
  t.is(count, 6);
  t.deepEqual(mean.shape, [2]);
  t.true(relativeError(mean.dataSync() as Float32Array, new Float32Array([3.5, 35])) < 1e-6);
  t.true(relativeError(variance.dataSync() as Float32Array, new Float32Array([35 / 12, 3500 / 12])) < 1e-6);
  const first = output.dataSync()[0]!;
  t.true(Math.abs(first - -2.5 / Math.sqrt(35 / 12 + EPS)) < 1e-5, `first output ${first}`);
  tf.dispose([x, output, mean, variance]);
});

test.serial('BatchNorm2d updates running statistics', async (t) => {
  await tf.setBackend('cpu');
  const layer = new BatchNorm2d(2, { momentum: 0.25 });
  const x = tf.tensor4d([1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60], [2, 3, 1, 2]);
  tf.dispose(layer.forward(x));
  // running = (1 - m) * running + m * batch, with the unbiased variance (count 6).
  const expectedMean = [0.25 * 3.5, 0.25 * 35];
  const expectedVar = [0.75 + (0.25 * 35) / 10, 0.75 + (0.25 * 3500) / 10];
  t.true(relativeError(layer.runningMean.dataSync() as Float32Array, new Float32Array(expectedMean)) < 1e-6);
  t.true(relativeError(layer.runningVar.dataSync() as Float32Array, new Float32Array(expectedVar)) < 1e-6);
  x.dispose();
  layer.dispose();
});

test.serial('normalisation training leaks nothing', async (t) => {
  for (const backend of ['cpu', 'wasm']) {
    await tf.setBackend(backend);
    const batchNorm = new BatchNorm2d(8);
    const groupNormLayer = new GroupNorm(4, 8);
    const variables = [...batchNorm.namedParameters(), ...groupNormLayer.namedParameters()].map(([, v]) => v);
    const x = tf.tensor4d(randomValues(2 * 5 * 7 * 8, 77), [2, 5, 7, 8]);
    const before = liveCounts();
    for (let step = 0; step < 2; step++) {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(groupNormLayer.forward(tf.relu(batchNorm.forward(x))))), variables);
      tf.dispose([value, ...Object.values(grads)]);
    }
    t.deepEqual(liveCounts(), before, `${backend}: tensors and data ids`);
    x.dispose();
    batchNorm.dispose();
    groupNormLayer.dispose();
  }
});
