import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import '../../../src/backends/register_gradients.ts';
import { registerWasmTrainingKernels } from '../../../src/backends/wasm_kernels.ts';
import { liveCounts, outputsOn, randomValues, relativeError } from './backend_helpers.ts';

interface BatchNormCase {
  label: string;
  shape: number[];
  /** Element count of each parameter: the channel count, 1, or undefined for a missing one. */
  offset?: number;
  scale?: number;
  mean: number;
  epsilon: number;
}

const TOLERANCE = 1e-5;

const CASES: BatchNormCase[] = [
  { label: 'per channel, batch 2', shape: [2, 9, 11, 16], offset: 16, scale: 16, mean: 16, epsilon: 1e-5 },
  { label: 'per channel, batch 1, odd channels', shape: [1, 7, 5, 3], offset: 3, scale: 3, mean: 3, epsilon: 1e-3 },
  { label: 'no offset or scale', shape: [2, 4, 6, 8], mean: 8, epsilon: 1e-5 },
  { label: 'one value per parameter', shape: [2, 3, 5, 4], offset: 1, scale: 1, mean: 1, epsilon: 1e-5 },
  { label: 'rank 2', shape: [13, 6], offset: 6, scale: 6, mean: 6, epsilon: 1e-5 },
  // Parameters with one value per position go to the original kernel.
  { label: 'per position (fallback)', shape: [2, 3, 4], offset: 12, scale: 12, mean: 12, epsilon: 1e-5 },
];

/** Returns a batch norm of values far from zero with a small spread, so that a cancellation error would show. */
function batchNormCompute(c: BatchNormCase, seed: number): () => tf.Tensor {
  const size = c.shape.reduce((a, b) => a * b);
  const xValues = randomValues(size, seed).map((v) => 100 + v);
  const parameter = (count: number, index: number, low: number, spread: number) =>
    randomValues(count, seed + index).map((v) => low + spread * (v + 1));
  const parameterShape = (count: number): number[] => {
    if (count === 1) return [1];
    if (count === c.shape[c.shape.length - 1]) return [count];
    return c.shape.slice(1);
  };
  const meanValues = parameter(c.mean, 1, 99, 1);
  const varianceValues = parameter(c.mean, 2, 0.2, 0.5);
  const offsetValues = c.offset === undefined ? undefined : parameter(c.offset, 3, -1, 1);
  const scaleValues = c.scale === undefined ? undefined : parameter(c.scale, 4, 0.5, 1);
  return () => {
    const tensor = (values: Float32Array | undefined, count: number | undefined) =>
      values === undefined || count === undefined ? undefined : tf.tensor(values, parameterShape(count));
    return tf.batchNorm(
      tf.tensor(xValues, c.shape),
      tensor(meanValues, c.mean)!,
      tensor(varianceValues, c.mean)!,
      tensor(offsetValues, c.offset),
      tensor(scaleValues, c.scale),
      c.epsilon,
    );
  };
}

test.before(async () => {
  registerWasmTrainingKernels();
  await tf.setBackend('wasm');
  await tf.ready();
});

test.serial('FusedBatchNorm matches cpu', async (t) => {
  for (const [index, c] of CASES.entries()) {
    const expected = await outputsOn('cpu', batchNormCompute(c, 900 + 10 * index));
    const actual = await outputsOn('wasm', batchNormCompute(c, 900 + 10 * index));
    t.deepEqual(actual.shapes[0], expected.shapes[0], `${c.label}: shape`);
    const error = relativeError(actual.values[0]!, expected.values[0]!);
    t.true(error < TOLERANCE, `${c.label}: relative error ${error}`);
  }
});

test.serial('FusedBatchNorm normalises a hand-computed case', async (t) => {
  await tf.setBackend('wasm');
  // Channel 0: (x - 2) / sqrt(4 + 0) * 3 + 1. Channel 1: (x - 0) / sqrt(1 + 0) * 1 - 1.
  const output = tf.tidy(() =>
    tf.batchNorm(tf.tensor2d([2, 5, 6, -3], [2, 2]), tf.tensor1d([2, 0]), tf.tensor1d([4, 1]), tf.tensor1d([1, -1]), tf.tensor1d([3, 1]), 0),
  );
  t.deepEqual(Array.from(output.dataSync()), [1, 4, 7, -4]);
  output.dispose();
});

test.serial('inference batch norm gradients match cpu', async (t) => {
  const xValues = randomValues(2 * 5 * 6 * 8, 61);
  const compute = () => {
    const mean = tf.tensor1d(randomValues(8, 62));
    const variance = tf.add(tf.tensor1d(randomValues(8, 63)), 1.5);
    return tf.grads((x: tf.Tensor, offset: tf.Tensor, scale: tf.Tensor) =>
      tf.sum(tf.square(tf.batchNorm(x, mean, variance, offset, scale, 1e-5))),
    )([tf.tensor4d(xValues, [2, 5, 6, 8]), tf.tensor1d(randomValues(8, 64)), tf.tensor1d(randomValues(8, 65))]);
  };
  const expected = await outputsOn('cpu', compute);
  const actual = await outputsOn('wasm', compute);
  for (const [i, name] of ['x', 'offset', 'scale'].entries()) {
    const error = relativeError(actual.values[i]!, expected.values[i]!);
    t.true(error < 1e-4, `gradient of ${name}: relative error ${error}`);
  }
});

test.serial('FusedBatchNorm leaks nothing', async (t) => {
  await tf.setBackend('wasm');
  const before = liveCounts();
  for (const [index, c] of CASES.entries()) tf.tidy(() => batchNormCompute(c, index)().dataSync());
  t.deepEqual(liveCounts(), before);
});
