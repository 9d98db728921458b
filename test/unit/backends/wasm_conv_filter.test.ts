import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import { setMaxPatchElements } from '../../../src/backends/wasm/conv2d_backprop_filter.ts';
import { registerWasmTrainingKernels } from '../../../src/backends/wasm_kernels.ts';
import { liveCounts, outputsOn, randomValues, relativeError } from './backend_helpers.ts';

type ExplicitPad = [[number, number], [number, number], [number, number], [number, number]];

interface FilterCase {
  label: string;
  input: [number, number, number, number];
  kernel: number;
  stride: number | [number, number];
  pad: number | ExplicitPad;
  outChannels: number;
}

const TOLERANCE = 1e-4;

// Each case keeps outChannels <= kernel * kernel * inChannels, so that the patch matrix is
// built channel by channel: the path with column phases for strides above 1 and merged row
// copies for unit strides.
const CASES: FilterCase[] = [
  { label: 'stem 7x7/2 pad 3, odd width', input: [2, 23, 29, 3], kernel: 7, stride: 2, pad: 3, outChannels: 8 },
  { label: '3x3/2 pad 1, batch 1', input: [1, 15, 17, 8], kernel: 3, stride: 2, pad: 1, outChannels: 16 },
  { label: '3x3/3 pad 1, three column phases', input: [2, 16, 20, 4], kernel: 3, stride: 3, pad: 1, outChannels: 8 },
  // Explicit pads, because tfjs-core 4.22 sizes the output of a numeric pad with the row
  // stride in both directions.
  { label: '3x3 strides [1, 2]', input: [2, 9, 14, 4], kernel: 3, stride: [1, 2], pad: [[0, 0], [1, 1], [1, 1], [0, 0]], outChannels: 8 },
  { label: '3x3 strides [2, 1]', input: [2, 9, 14, 4], kernel: 3, stride: [2, 1], pad: [[0, 0], [1, 1], [1, 1], [0, 0]], outChannels: 8 },
  { label: '1x1/2 valid', input: [2, 15, 17, 16], kernel: 1, stride: 2, pad: 0, outChannels: 8 },
  { label: '3x3/1 pad 1, merged rows', input: [2, 11, 13, 8], kernel: 3, stride: 1, pad: 1, outChannels: 16 },
  {
    label: '3x3/1 asymmetric pad, two cleared columns',
    input: [2, 10, 12, 4],
    kernel: 3,
    stride: 1,
    pad: [[0, 0], [2, 0], [2, 0], [0, 0]],
    outChannels: 8,
  },
  { label: '5x5/1 pad 2, rows past both image edges', input: [2, 4, 6, 2], kernel: 5, stride: 1, pad: 2, outChannels: 8 },
];

function outputSize(size: number, kernel: number, stride: number, before: number, after: number): number {
  return Math.floor((size + before + after - kernel) / stride) + 1;
}

function backpropFilter(c: FilterCase, seed: number): () => tf.Tensor {
  const [batch, height, width, inChannels] = c.input;
  const [strideHeight, strideWidth] = typeof c.stride === 'number' ? [c.stride, c.stride] : c.stride;
  const [top, bottom] = typeof c.pad === 'number' ? [c.pad, c.pad] : c.pad[1];
  const [left, right] = typeof c.pad === 'number' ? [c.pad, c.pad] : c.pad[2];
  const dyShape = [
    batch,
    outputSize(height, c.kernel, strideHeight, top, bottom),
    outputSize(width, c.kernel, strideWidth, left, right),
    c.outChannels,
  ];
  const xValues = randomValues(batch * height * width * inChannels, seed);
  const dyValues = randomValues(dyShape.reduce((a, b) => a * b), seed + 1);
  return () =>
    tf.engine().runKernel(
      'Conv2DBackpropFilter',
      { x: tf.tensor4d(xValues, c.input), dy: tf.tensor(dyValues, dyShape) },
      { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', filterShape: [c.kernel, c.kernel, inChannels, c.outChannels] },
    ) as tf.Tensor;
}

test.before(async () => {
  registerWasmTrainingKernels();
  await tf.setBackend('wasm');
  await tf.ready();
});

test.serial('filter gradient matches cpu', async (t) => {
  for (const [index, c] of CASES.entries()) {
    const expected = await outputsOn('cpu', backpropFilter(c, 500 + index));
    const actual = await outputsOn('wasm', backpropFilter(c, 500 + index));
    t.deepEqual(actual.shapes[0], expected.shapes[0], `${c.label}: shape`);
    const error = relativeError(actual.values[0]!, expected.values[0]!);
    t.true(error < TOLERANCE, `${c.label}: relative error ${error}`);
  }
});

test.serial('filter gradient in small chunks matches cpu', async (t) => {
  // 3000 patch elements are one to ten output rows here, so chunks end inside an image and
  // merged row runs stop at chunk ends.
  const previous = setMaxPatchElements(3000);
  try {
    for (const [index, c] of CASES.entries()) {
      const expected = await outputsOn('cpu', backpropFilter(c, 600 + index));
      const actual = await outputsOn('wasm', backpropFilter(c, 600 + index));
      const error = relativeError(actual.values[0]!, expected.values[0]!);
      t.true(error < TOLERANCE, `${c.label}: relative error ${error}`);
    }
  } finally {
    setMaxPatchElements(previous);
  }
});

test.serial('filter gradient leaks nothing', async (t) => {
  await tf.setBackend('wasm');
  const before = liveCounts();
  for (const [index, c] of CASES.entries()) tf.tidy(() => backpropFilter(c, index)().dataSync());
  t.deepEqual(liveCounts(), before);
});
