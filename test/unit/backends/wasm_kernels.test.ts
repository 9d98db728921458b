import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import { registerCpuKernelFixes } from '../../../src/backends/cpu_kernels.ts';
import '../../../src/backends/register_gradients.ts';
import { setMaxPatchElements } from '../../../src/backends/wasm/conv2d_backprop_filter.ts';
import { originalConv2dBackpropInputKernel, registerWasmTrainingKernels } from '../../../src/backends/wasm_kernels.ts';
import { outputsOn, randomValues, relativeError } from './backend_helpers.ts';

type Pad = 'valid' | 'same' | number | [[number, number], [number, number], [number, number], [number, number]];

interface ConvCase {
  kernel: number;
  stride: number;
  pad: Pad;
  /** Input [N, H, W, C_in]. */
  input: [number, number, number, number];
  outChannels: number;
}

function outputSize(inputSize: number, kernel: number, stride: number, pad: Pad, axis: 1 | 2): number {
  if (pad === 'same') return Math.ceil(inputSize / stride);
  if (pad === 'valid') return Math.floor((inputSize - kernel) / stride) + 1;
  const [before, after] = typeof pad === 'number' ? [pad, pad] : pad[axis];
  return Math.floor((inputSize + before + after - kernel) / stride) + 1;
}

/** Runs `compute` on `backend` and returns the values of its outputs. Every tensor it made is freed. */
async function valuesOn(backend: string, compute: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  return (await outputsOn(backend, compute)).values;
}

function describeCase(c: ConvCase): string {
  return `k${c.kernel} s${c.stride} pad ${JSON.stringify(c.pad)} input [${c.input}] -> ${c.outChannels}`;
}

/** Returns the case table: every kernel size, stride and pad, with sizes, batch sizes and channels rotated. */
function convCases(): ConvCase[] {
  const sizes: Array<[number, number]> = [
    [15, 17],
    [16, 16],
  ];
  const channels = [3, 8, 32];
  const cases: ConvCase[] = [];

  let index = 0;
  for (const kernel of [1, 3, 7]) {
    for (const stride of [1, 2]) {
      for (const pad of [0, 1, 3, 'same', 'valid'] as Pad[]) {
        const [height, width] = sizes[index % 2]!;
        const batch = 1 + (Math.floor(index / 2) % 2);
        cases.push({
          kernel,
          stride,
          pad,
          input: [batch, height, width, channels[index % 3]!],
          outChannels: channels[(index + 1) % 3]!,
        });
        index++;
      }
    }
  }

  // Asymmetric explicit padding, wide 1x1 convolutions (dy is the larger matmul operand) and a
  // valid strided case that leaves the last input row unread.
  cases.push({ kernel: 3, stride: 2, pad: [[0, 0], [0, 2], [3, 1], [0, 0]], input: [2, 16, 16, 8], outChannels: 8 });
  cases.push({ kernel: 1, stride: 1, pad: 0, input: [2, 15, 17, 3], outChannels: 32 });
  cases.push({ kernel: 1, stride: 2, pad: 'valid', input: [1, 16, 16, 8], outChannels: 32 });
  cases.push({ kernel: 3, stride: 2, pad: 'valid', input: [2, 16, 16, 8], outChannels: 3 });
  cases.push({ kernel: 7, stride: 2, pad: 3, input: [2, 16, 16, 3], outChannels: 8 });
  return cases;
}

function convTensors(c: ConvCase, seed: number) {
  const [batch, height, width, inChannels] = c.input;
  const outShape = [batch, outputSize(height, c.kernel, c.stride, c.pad, 1), outputSize(width, c.kernel, c.stride, c.pad, 2), c.outChannels];
  const filterShape: [number, number, number, number] = [c.kernel, c.kernel, inChannels, c.outChannels];
  return {
    x: () => tf.tensor4d(randomValues(batch * height * width * inChannels, seed), c.input),
    dy: () => tf.tensor(randomValues(outShape.reduce((a, b) => a * b), seed + 1), outShape),
    filter: () => tf.tensor4d(randomValues(filterShape.reduce((a, b) => a * b), seed + 2), filterShape),
    filterShape,
  };
}

function backpropFilter(c: ConvCase, seed: number): () => tf.Tensor {
  const data = convTensors(c, seed);
  return () =>
    tf.engine().runKernel(
      'Conv2DBackpropFilter',
      { x: data.x(), dy: data.dy() },
      { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', filterShape: data.filterShape },
    ) as tf.Tensor;
}

function backpropInput(c: ConvCase, seed: number): () => tf.Tensor {
  const data = convTensors(c, seed);
  return () =>
    tf.engine().runKernel(
      'Conv2DBackpropInput',
      { dy: data.dy(), filter: data.filter() },
      { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', inputShape: c.input },
    ) as tf.Tensor;
}

/** Runs `compute` on wasm and checks that it leaves no tensor and no backend data behind. */
async function assertNoLeak(t: import('ava').ExecutionContext, label: string, compute: () => tf.Tensor): Promise<void> {
  await tf.setBackend('wasm');
  const tensorsBefore = tf.memory().numTensors;
  const dataIdsBefore = tf.engine().backend.numDataIds();
  const output = compute();
  output.dataSync();
  output.dispose();
  t.is(tf.memory().numTensors, tensorsBefore, `${label}: tensors leaked`);
  t.is(tf.engine().backend.numDataIds(), dataIdsBefore, `${label}: backend data leaked`);
}

const TOLERANCE = 1e-4;

test.before(async () => {
  // The cpu reference needs the corrected ResizeNearestNeighborGrad for batch sizes above 1.
  registerCpuKernelFixes();
  registerWasmTrainingKernels();
  await tf.setBackend('wasm');
  await tf.ready();
});

test.serial('registration is idempotent', (t) => {
  const before = tf.getKernel('Conv2DBackpropInput', 'wasm')!.kernelFunc;
  registerWasmTrainingKernels();
  t.is(tf.getKernel('Conv2DBackpropInput', 'wasm')!.kernelFunc, before);
  t.not(originalConv2dBackpropInputKernel(), before);
  for (const name of ['Conv2DBackpropFilter', 'MaxPoolGrad', 'UnsortedSegmentSum', 'Tile']) {
    t.truthy(tf.getKernel(name, 'wasm'), `${name} is registered`);
  }
});

test.serial('Conv2DBackpropFilter matches cpu over the case table', async (t) => {
  const cases = convCases();
  for (const [index, c] of cases.entries()) {
    const [expected] = await valuesOn('cpu', backpropFilter(c, 100 + index));
    const [actual] = await valuesOn('wasm', backpropFilter(c, 100 + index));
    t.is(actual!.length, expected!.length, describeCase(c));
    t.true(relativeError(actual!, expected!) < TOLERANCE, `${describeCase(c)}: relative error ${relativeError(actual!, expected!)}`);
  }
});

test.serial('Conv2DBackpropFilter in row chunks matches unchunked', async (t) => {
  const c: ConvCase = { kernel: 3, stride: 2, pad: 1, input: [2, 15, 17, 8], outChannels: 8 };
  const [whole] = await valuesOn('wasm', backpropFilter(c, 7));
  // 72 * 9 elements is one output row of the patch matrix, so each chunk contains two rows.
  const previous = setMaxPatchElements(72 * 9 * 2);
  try {
    const [chunked] = await valuesOn('wasm', backpropFilter(c, 7));
    const [expected] = await valuesOn('cpu', backpropFilter(c, 7));
    t.true(relativeError(chunked!, whole!) < TOLERANCE, 'chunked against one chunk');
    t.true(relativeError(chunked!, expected!) < TOLERANCE, 'chunked against cpu');
  } finally {
    setMaxPatchElements(previous);
  }
});

test.serial('Conv2DBackpropInput matches cpu over the case table', async (t) => {
  const cases = convCases();
  for (const [index, c] of cases.entries()) {
    const [expected] = await valuesOn('cpu', backpropInput(c, 200 + index));
    const [actual] = await valuesOn('wasm', backpropInput(c, 200 + index));
    t.is(actual!.length, expected!.length, describeCase(c));
    t.true(relativeError(actual!, expected!) < TOLERANCE, `${describeCase(c)}: relative error ${relativeError(actual!, expected!)}`);
  }
});

test.serial('Conv2DBackpropInput NCHW uses the original kernel', async (t) => {
  const dy = randomValues(2 * 4 * 8 * 8, 31);
  const filter = randomValues(3 * 3 * 6 * 4, 32);
  const compute = () =>
    tf.engine().runKernel(
      'Conv2DBackpropInput',
      { dy: tf.tensor4d(dy, [2, 4, 8, 8]), filter: tf.tensor4d(filter, [3, 3, 6, 4]) },
      { strides: 2, pad: 'same', dataFormat: 'NCHW', inputShape: [2, 6, 15, 16] },
    ) as tf.Tensor;
  const [expected] = await valuesOn('cpu', compute);
  const [actual] = await valuesOn('wasm', compute);
  t.true(relativeError(actual!, expected!) < TOLERANCE);
});

test.serial('Conv2DBackpropFilter rejects a dy of the wrong shape', async (t) => {
  await tf.setBackend('wasm');
  const error = t.throws(() =>
    tf.tidy(() =>
      tf.engine().runKernel(
        'Conv2DBackpropFilter',
        { x: tf.zeros([1, 8, 8, 3]), dy: tf.zeros([1, 8, 8, 4]) },
        { strides: 2, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 3, 4] },
      ),
    ),
  );
  t.is(
    error?.message,
    'Conv2DBackpropFilter on wasm: dy has shape [1,8,8,4], expected [1,4,4,4] for x [1,8,8,3], filter [3,3,3,4], strides 2 and pad "same"',
  );
});

test.serial('Conv2DBackpropFilter rejects NCHW', async (t) => {
  await tf.setBackend('wasm');
  const error = t.throws(() =>
    tf.tidy(() =>
      tf.engine().runKernel(
        'Conv2DBackpropFilter',
        { x: tf.zeros([1, 3, 8, 8]), dy: tf.zeros([1, 4, 8, 8]) },
        { strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 3, 4] },
      ),
    ),
  );
  t.is(error?.message, "Conv2DBackpropFilter on wasm: dataFormat must be 'NHWC', got 'NCHW'");
});

test.serial('MaxPoolGrad routes to the first maximum', async (t) => {
  // One 3x3 window over all-negative values with a tie: the gradient belongs to the first -1.
  const x = [-3, -1, -2, -1, -5, -4, -6, -7, -8];
  const [dx] = await valuesOn('wasm', () =>
    tf.grad((input: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(input as tf.Tensor4D, 3, 1, 'valid'), 5)))(tf.tensor4d(x, [1, 3, 3, 1])),
  );
  t.deepEqual(Array.from(dx!), [0, 5, 0, 0, 0, 0, 0, 0, 0]);
});

test.serial('MaxPoolGrad 3x3/2 pad 1 matches cpu', async (t) => {
  for (const shape of [
    [2, 15, 17, 8],
    [1, 16, 16, 32],
  ] as Array<[number, number, number, number]>) {
    const values = randomValues(shape.reduce((a, b) => a * b), 41);
    const compute = () => {
      // ReLU first, as in the ResNet stem, so that many windows are all zero.
      const input = tf.relu(tf.tensor4d(values, shape));
      const weights = tf.tensor(randomValues(input.size, 42).slice(0, Math.ceil(shape[1] / 2) * Math.ceil(shape[2] / 2) * shape[0] * shape[3]));
      return tf.grad((v: tf.Tensor) => {
        const pooled = tf.maxPool(v as tf.Tensor4D, 3, 2, 1);
        return tf.sum(tf.mul(pooled, tf.reshape(weights, pooled.shape)));
      })(input);
    };
    const [expected] = await valuesOn('cpu', compute);
    const [actual] = await valuesOn('wasm', compute);
    t.true(relativeError(actual!, expected!) < TOLERANCE, `shape [${shape}]`);
  }
});

test.serial('Tile matches cpu', async (t) => {
  const cases: Array<{ shape: number[]; reps: number[]; dtype: 'float32' | 'int32' }> = [
    // The batch-norm gradient case: a per-channel factor over a whole activation.
    { shape: [1, 1, 1, 64], reps: [2, 15, 17, 1], dtype: 'float32' },
    { shape: [2, 3, 5, 1], reps: [1, 2, 1, 40], dtype: 'float32' },
    { shape: [3, 7], reps: [4, 3], dtype: 'int32' },
    { shape: [5], reps: [1], dtype: 'float32' },
    { shape: [2, 1, 3, 2, 2], reps: [2, 3, 1, 2, 33], dtype: 'float32' },
  ];
  for (const c of cases) {
    const values = randomValues(c.shape.reduce((a, b) => a * b, 1), 71).map((v) => Math.round(v * 100));
    const compute = () => tf.cast(tf.tile(tf.tensor(values, c.shape, c.dtype), c.reps), 'float32');
    const [expected] = await valuesOn('cpu', compute);
    const [actual] = await valuesOn('wasm', compute);
    t.deepEqual(Array.from(actual!), Array.from(expected!), `shape [${c.shape}] reps [${c.reps}] ${c.dtype}`);
  }
});

test.serial('UnsortedSegmentSum sums rows and drops ids out of range', async (t) => {
  const [sums] = await valuesOn('wasm', () =>
    tf.unsortedSegmentSum(tf.tensor2d([1, 2, 10, 20, 100, 200, 1000, 2000], [4, 2]), tf.tensor1d([2, 0, 2, 3], 'int32'), 3),
  );
  t.deepEqual(Array.from(sums!), [10, 20, 0, 0, 101, 202]);
});

test.serial('gather gradient matches cpu', async (t) => {
  const values = randomValues(20 * 4, 51);
  const compute = () =>
    tf.grad((params: tf.Tensor) => tf.sum(tf.square(tf.gather(params, tf.tensor1d([3, 3, 0, 19, 7], 'int32')))))(tf.tensor2d(values, [20, 4]));
  const [expected] = await valuesOn('cpu', compute);
  const [actual] = await valuesOn('wasm', compute);
  t.true(relativeError(actual!, expected!) < TOLERANCE);
  t.not(actual![3 * 4], 0);
});

test.serial('small conv net gradients match cpu', async (t) => {
  const shapes: Record<string, number[]> = {
    stem: [3, 3, 3, 8],
    reduce: [1, 1, 8, 16],
    body: [3, 3, 16, 16],
    gamma: [8],
    beta: [8],
  };
  const image = randomValues(2 * 17 * 15 * 3, 61);
  const parameterValues = Object.values(shapes).map((shape, i) => randomValues(shape.reduce((a, b) => a * b), 62 + i));

  const compute = () => {
    const [stem, reduce, body, gamma, beta] = Object.values(shapes).map((shape, i) => tf.tensor(parameterValues[i]!, shape));
    const input = tf.tensor4d(image, [2, 17, 15, 3]);
    const loss = (x: tf.Tensor4D, w1: tf.Tensor4D, w2: tf.Tensor4D, w3: tf.Tensor4D, g: tf.Tensor1D, b: tf.Tensor1D) => {
      const stemOutput = tf.conv2d(x, w1, 2, 1);
      const { mean, variance } = tf.moments(stemOutput, [0, 1, 2]);
      const h = tf.maxPool(tf.relu(tf.batchNorm(stemOutput, mean, variance, b, g, 1e-5)) as tf.Tensor4D, 3, 2, 1);
      const reduced = tf.conv2d(h, w2, 1, 0);
      const deep = tf.tanh(tf.conv2d(reduced, w3, 1, 'same'));
      const pooled = tf.avgPool(deep, 2, 2, 'valid');
      const upsampled = tf.image.resizeNearestNeighbor(pooled, [reduced.shape[1], reduced.shape[2]]);
      return tf.mean(tf.sigmoid(tf.add(upsampled, reduced)));
    };
    return tf.grads(loss as (...args: tf.Tensor[]) => tf.Tensor)([input, stem, reduce, body, gamma, beta]);
  };
  const expected = await valuesOn('cpu', compute);
  const actual = await valuesOn('wasm', compute);
  const names = ['input', 'stem', 'reduce', 'body', 'gamma', 'beta'];
  for (const [i, name] of names.entries()) {
    t.true(relativeError(actual[i]!, expected[i]!) < TOLERANCE, `gradient of ${name}: relative error ${relativeError(actual[i]!, expected[i]!)}`);
  }
});

test.serial('kernels leak no tensors or backend data', async (t) => {
  const strided: ConvCase = { kernel: 3, stride: 2, pad: 1, input: [2, 15, 17, 8], outChannels: 32 };
  const pointwise: ConvCase = { kernel: 1, stride: 1, pad: 0, input: [2, 15, 17, 3], outChannels: 32 };
  await assertNoLeak(t, 'Conv2DBackpropFilter strided', () => tf.tidy(backpropFilter(strided, 1)));
  await assertNoLeak(t, 'Conv2DBackpropFilter pointwise', () => tf.tidy(backpropFilter(pointwise, 1)));
  await assertNoLeak(t, 'Conv2DBackpropInput strided', () => tf.tidy(backpropInput(strided, 1)));
  await assertNoLeak(t, 'Conv2DBackpropInput pointwise', () => tf.tidy(backpropInput(pointwise, 1)));
  await assertNoLeak(t, 'MaxPoolGrad', () =>
    tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.maxPool(x as tf.Tensor4D, 3, 2, 1)))(tf.ones([1, 8, 8, 4]))),
  );
  await assertNoLeak(t, 'Tile', () => tf.tidy(() => tf.tile(tf.ones([1, 1, 1, 8]), [2, 3, 3, 1])));
  await assertNoLeak(t, 'UnsortedSegmentSum', () =>
    tf.tidy(() => tf.unsortedSegmentSum(tf.ones([4, 2]), tf.tensor1d([0, 1, 1, 5], 'int32'), 2)),
  );
});
