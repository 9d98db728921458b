import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import '../../../src/backends/register_gradients.ts';
import { registerWasmTrainingKernels } from '../../../src/backends/wasm_kernels.ts';
import { liveCounts, outputsOn, randomValues } from './backend_helpers.ts';

interface SplitCase {
  shape: number[];
  sizes: number[] | number;
  axis: number;
  dtype: 'float32' | 'int32' | 'bool';
}

const CASES: SplitCase[] = [
  // The gradient of concat(x, h) in an RLA-ResNet block: short rows on the last axis.
  { shape: [2, 9, 11, 24], sizes: [16, 8], axis: 3, dtype: 'float32' },
  { shape: [1, 7, 5, 3], sizes: [1, -1], axis: -1, dtype: 'float32' },
  // Rows of 128 elements and more are copied with TypedArray.set.
  { shape: [2, 3, 300], sizes: [150, 0, 150], axis: 2, dtype: 'float32' },
  { shape: [2, 5, 7, 6], sizes: [2, 3], axis: 1, dtype: 'int32' },
  { shape: [4, 6], sizes: 2, axis: 0, dtype: 'float32' },
  { shape: [3, 8], sizes: [5, 3], axis: 1, dtype: 'bool' },
];

function splitCompute(c: SplitCase, seed: number): () => tf.Tensor[] {
  const values = randomValues(c.shape.reduce((a, b) => a * b), seed).map((v) => Math.round(v * 50));
  return () => tf.split(tf.tensor(values, c.shape, c.dtype), c.sizes, c.axis).map((part) => tf.cast(part, 'float32'));
}

test.before(async () => {
  registerWasmTrainingKernels();
  await tf.setBackend('wasm');
  await tf.ready();
});

test.serial('SplitV matches cpu', async (t) => {
  for (const [index, c] of CASES.entries()) {
    const label = `shape [${c.shape}] sizes ${JSON.stringify(c.sizes)} axis ${c.axis} ${c.dtype}`;
    const expected = await outputsOn('cpu', splitCompute(c, 700 + index));
    const actual = await outputsOn('wasm', splitCompute(c, 700 + index));
    t.deepEqual(actual.shapes, expected.shapes, `${label}: shapes`);
    t.deepEqual(actual.values.map((v) => Array.from(v)), expected.values.map((v) => Array.from(v)), `${label}: values`);
  }
});

test.serial('SplitV splits string tensors', async (t) => {
  await tf.setBackend('wasm');
  // tf.split rejects strings, but the kernel accepts them.
  const x = tf.tensor2d(['a', 'b', 'c', 'd', 'e', 'f'], [2, 3]);
  const parts = tf.engine().runKernel('SplitV', { x }, { numOrSizeSplits: [1, 2], axis: 1 }) as tf.Tensor[];
  x.dispose();
  t.deepEqual(parts.map((part) => part.dataSync()), [['a', 'd'], ['b', 'c', 'e', 'f']]);
  tf.dispose(parts);
});

test.serial('concat gradient matches cpu', async (t) => {
  const xValues = randomValues(2 * 6 * 7 * 16, 81);
  const hValues = randomValues(2 * 6 * 7 * 8, 82);
  const weights = randomValues(2 * 6 * 7 * 24, 83);
  const compute = () =>
    tf.grads((x: tf.Tensor, h: tf.Tensor) => tf.sum(tf.mul(tf.concat([x, h], 3), tf.tensor4d(weights, [2, 6, 7, 24]))))([
      tf.tensor4d(xValues, [2, 6, 7, 16]),
      tf.tensor4d(hValues, [2, 6, 7, 8]),
    ]);
  const expected = await outputsOn('cpu', compute);
  const actual = await outputsOn('wasm', compute);
  t.deepEqual(Array.from(actual.values[0]!), Array.from(expected.values[0]!), 'gradient of x');
  t.deepEqual(Array.from(actual.values[1]!), Array.from(expected.values[1]!), 'gradient of h');
});

test.serial('SplitV leaks nothing', async (t) => {
  await tf.setBackend('wasm');
  const before = liveCounts();
  for (const [index, c] of CASES.entries()) tf.tidy(() => splitCompute(c, index)().forEach((part) => part.dataSync()));
  t.deepEqual(liveCounts(), before);
});
