import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import '../../../src/backends/register_gradients.ts';
import { registerWasmTrainingKernels } from '../../../src/backends/wasm_kernels.ts';
import { liveCounts, outputsOn, randomValues, relativeError } from './backend_helpers.ts';

interface ReduceCase {
  shape: number[];
  axes: number[];
  keepDims: boolean;
}

const TOLERANCE = 1e-4;

const REDUCE_CASES: ReduceCase[] = [
  // Batch-norm statistics and bias gradients: the leading axes of NHWC, batch 2 and 1.
  { shape: [2, 15, 17, 8], axes: [0, 1, 2], keepDims: false },
  { shape: [1, 15, 17, 8], axes: [0, 1, 2], keepDims: true },
  // Group-norm statistics on [N, H*W, groups, channels per group].
  { shape: [2, 255, 4, 2], axes: [1, 3], keepDims: true },
  // Per-image sums over positions of [N, H*W, C].
  { shape: [2, 255, 6], axes: [1], keepDims: false },
  { shape: [2, 15, 17, 3], axes: [0], keepDims: false },
  { shape: [2, 15, 17, 3], axes: [0, 2], keepDims: true },
  { shape: [2, 15, 17, 8], axes: [-2], keepDims: false },
  // Size-1 axes, fewer than eight rows and a remainder after blocks of eight rows.
  { shape: [2, 7, 1, 5], axes: [0, 2], keepDims: false },
  { shape: [3, 1, 4], axes: [0, 2], keepDims: true },
  { shape: [1, 1, 1], axes: [0], keepDims: false },
  { shape: [7, 5], axes: [0], keepDims: false },
  { shape: [19, 3], axes: [0], keepDims: true },
  // Innermost axes, which stay on the kernel of tfjs-backend-wasm.
  { shape: [2, 15, 17, 8], axes: [3], keepDims: false },
  { shape: [2, 15, 17, 8], axes: [0, 1, 2, 3], keepDims: false },
];

function describeCase(c: ReduceCase): string {
  return `shape [${c.shape}] axes [${c.axes}] keepDims ${c.keepDims}`;
}

test.before(async () => {
  registerWasmTrainingKernels();
  await tf.setBackend('wasm');
  await tf.ready();
});

test.serial('Sum and Mean match cpu over the case table', async (t) => {
  for (const [index, c] of REDUCE_CASES.entries()) {
    const values = randomValues(c.shape.reduce((a, b) => a * b, 1), 300 + index);
    const compute = () => {
      const x = tf.tensor(values, c.shape);
      return [tf.sum(x, c.axes, c.keepDims), tf.mean(x, c.axes, c.keepDims)];
    };
    const expected = await outputsOn('cpu', compute);
    const actual = await outputsOn('wasm', compute);
    for (const [i, kernel] of ['Sum', 'Mean'].entries()) {
      t.deepEqual(actual.shapes[i], expected.shapes[i], `${kernel} ${describeCase(c)}: shape`);
      const error = relativeError(actual.values[i]!, expected.values[i]!);
      t.true(error < TOLERANCE, `${kernel} ${describeCase(c)}: relative error ${error}`);
    }
  }
});

test.serial('Sum of int32 stays exact', async (t) => {
  const compute = () => tf.sum(tf.tensor2d([1, 2, 3, 4, 5, 6, 2147483, 7, 8], [3, 3], 'int32'), 0);
  const actual = await outputsOn('wasm', compute);
  t.deepEqual(Array.from(actual.values[0]!), [2147488, 14, 17]);
});

test.serial('Sum accumulates leading axes in float64', async (t) => {
  // Alternating 1000.1 and -1000 (1000.1 is 1000.0999755859375 in float32): the exact sum is
  // 32768 * 0.0999755859375 = 3276.0, and a float32 running sum ends at 3278.72.
  const rows = 1 << 16;
  const values = new Float32Array(rows * 2);
  for (let row = 0; row < rows; row++) {
    values[2 * row] = row % 2 === 0 ? 1000.1 : -1000;
    values[2 * row + 1] = 1;
  }
  const compute = () => tf.sum(tf.tensor3d(values, [2, rows / 2, 2]), [0, 1]);
  const expected = await outputsOn('cpu', compute);
  const actual = await outputsOn('wasm', compute);
  t.true(relativeError(actual.values[0]!, expected.values[0]!) < 1e-6, `wasm ${actual.values[0]} against cpu ${expected.values[0]}`);
  t.true(Math.abs(actual.values[0]![0]! - 3276) < 0.01, `sum of the first column ${actual.values[0]![0]}`);
  t.is(actual.values[0]![1], rows);
});

test.serial('batch-norm style gradients match cpu', async (t) => {
  const values = randomValues(2 * 9 * 11 * 6, 41);
  const compute = () =>
    tf.grads((x: tf.Tensor) => {
      const { mean, variance } = tf.moments(x, [0, 1, 2]);
      return tf.sum(tf.mul(tf.square(tf.sub(x, mean)), tf.add(variance, tf.sum(x, [0, 1], true))));
    })([tf.tensor4d(values, [2, 9, 11, 6])]);
  const expected = await outputsOn('cpu', compute);
  const actual = await outputsOn('wasm', compute);
  const error = relativeError(actual.values[0]!, expected.values[0]!);
  t.true(error < TOLERANCE, `relative error ${error}`);
});

test.serial('Identity shares the input data', async (t) => {
  await tf.setBackend('wasm');
  const before = liveCounts();
  const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
  const y = tf.clone(x);
  t.is(liveCounts().dataIds, before.dataIds + 1, 'clone added no data id');
  x.dispose();
  t.deepEqual(Array.from(y.dataSync()), [1, 2, 3, 4, 5, 6], 'clone outlives its source');
  t.deepEqual(y.shape, [2, 3]);
  y.dispose();
  t.is(liveCounts().dataIds, before.dataIds, 'data freed with the last reference');
  t.is(liveCounts().tensors, before.tensors);
});

test.serial('Identity copies string tensors', async (t) => {
  await tf.setBackend('wasm');
  const x = tf.tensor1d(['a', 'bc']);
  const y = tf.clone(x);
  x.dispose();
  t.deepEqual(y.dataSync(), ['a', 'bc']);
  y.dispose();
});

test.serial('Sum, Mean and Identity leak nothing', async (t) => {
  await tf.setBackend('wasm');
  const before = liveCounts();
  for (const c of REDUCE_CASES) {
    tf.tidy(() => {
      const x = tf.ones(c.shape);
      tf.sum(x, c.axes, c.keepDims).dataSync();
      tf.mean(x, c.axes, c.keepDims).dataSync();
      tf.clone(x).dataSync();
    });
  }
  t.deepEqual(liveCounts(), before);
});
