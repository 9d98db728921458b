/**
 * Benchmarks the convolution training kernels on the wasm backend (with rladet's kernels and,
 * for Conv2DBackpropInput, the original tfjs-backend-wasm kernel) and on the cpu backend, for
 * ResNet-like shapes, then times forward + backward of a small ResNet-like network.
 *
 *   npx tsx tools/bench_kernels.ts [--skip-cpu] [--cpu-network] [--repeats N]
 *
 * Every timed call gets freshly made inputs, because the wasm backend caches packed XNNPACK
 * weights per filter tensor and training passes new tensors on every step. Rates are
 * 2 * multiply-adds / time, in GFLOP/s. The wasm rows are the median of N calls after one
 * warm-up call. The cpu rows time a single call, because the cpu Conv2DBackpropFilter takes
 * tens of seconds per call at these shapes, and the network step runs on cpu only with
 * --cpu-network (over two minutes).
 */
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import { registerCpuKernelFixes } from '../src/backends/cpu_kernels.ts';
import '../src/backends/register_gradients.ts';
import { originalConv2dBackpropInputKernel, registerWasmTrainingKernels } from '../src/backends/wasm_kernels.ts';


interface ConvShape {
  name: string;
  /** Input [N, H, W, C_in]. */
  input: [number, number, number, number];
  kernel: number;
  stride: number;
  pad: number;
  outChannels: number;
}

const SHAPES: ConvShape[] = [
  { name: '3x3 64->64, 56x56', input: [2, 56, 56, 64], kernel: 3, stride: 1, pad: 1, outChannels: 64 },
  { name: '1x1 256->64, 56x56', input: [2, 56, 56, 256], kernel: 1, stride: 1, pad: 0, outChannels: 64 },
  { name: '3x3/2 128->128, 56x56', input: [2, 56, 56, 128], kernel: 3, stride: 2, pad: 1, outChannels: 128 },
  { name: '7x7/2 3->64 stem, 224x224', input: [2, 224, 224, 3], kernel: 7, stride: 2, pad: 3, outChannels: 64 },
];

type Operation = 'forward' | 'backprop input' | 'backprop filter';

interface Measurement {
  shape: string;
  operation: Operation;
  variant: string;
  milliseconds: number;
  gflops: number;
}

function outputShape(shape: ConvShape): [number, number, number, number] {
  const [batch, height, width] = shape.input;
  const size = (length: number) => Math.floor((length + 2 * shape.pad - shape.kernel) / shape.stride) + 1;
  return [batch, size(height), size(width), shape.outChannels];
}

function multiplyAdds(shape: ConvShape): number {
  const [batch, outHeight, outWidth, outChannels] = outputShape(shape);
  return batch * outHeight * outWidth * outChannels * shape.kernel * shape.kernel * shape.input[3];
}

interface Timing {
  repeats: number;
  warmUp: boolean;
}

/** Returns the median time in ms of `run` over `timing.repeats` calls, each on fresh inputs. */
function timeKernel(timing: Timing, makeInputs: () => tf.Tensor[], run: (inputs: tf.Tensor[]) => void): number {
  const times: number[] = [];
  const calls = timing.repeats + (timing.warmUp ? 1 : 0);
  for (let i = 0; i < calls; i++) {
    const inputs = makeInputs();
    const start = performance.now();
    run(inputs);
    const elapsed = performance.now() - start;
    tf.dispose(inputs);
    if (!timing.warmUp || i > 0) times.push(elapsed);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

function runToCompletion(kernelName: string, inputs: Record<string, tf.Tensor>, attrs: object): void {
  const output = tf.engine().runKernel(kernelName, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
  output.dataSync();
  output.dispose();
}

function benchShape(shape: ConvShape, backend: string, timing: Timing): Measurement[] {
  const filterShape: [number, number, number, number] = [shape.kernel, shape.kernel, shape.input[3], shape.outChannels];
  const dyShape = outputShape(shape);
  const common = { strides: shape.stride, pad: shape.pad, dataFormat: 'NHWC' };
  const flops = 2 * multiplyAdds(shape);
  const measurements: Measurement[] = [];
  const record = (operation: Operation, variant: string, milliseconds: number) =>
    measurements.push({ shape: shape.name, operation, variant, milliseconds, gflops: flops / milliseconds / 1e6 });

  const x = () => tf.randomNormal(shape.input);
  const filter = () => tf.randomNormal(filterShape);
  const dy = () => tf.randomNormal(dyShape);

  record(
    'forward',
    backend,
    timeKernel(timing, () => [x(), filter()], ([input, weights]) =>
      runToCompletion('Conv2D', { x: input!, filter: weights! }, { ...common, dilations: 1 }),
    ),
  );
  const inputAttrs = { ...common, inputShape: shape.input };
  record(
    'backprop input',
    backend === 'wasm' ? 'wasm (rladet)' : backend,
    timeKernel(timing, () => [dy(), filter()], ([gradient, weights]) =>
      runToCompletion('Conv2DBackpropInput', { dy: gradient!, filter: weights! }, inputAttrs),
    ),
  );
  if (backend === 'wasm') {
    const original = originalConv2dBackpropInputKernel();
    const wasmBackend = tf.backend();
    record(
      'backprop input',
      'wasm (original)',
      timeKernel(timing, () => [dy(), filter()], ([gradient, weights]) => {
        const output = original({ inputs: { dy: gradient!, filter: weights! }, backend: wasmBackend, attrs: inputAttrs as tf.NamedAttrMap });
        wasmBackend.disposeData((output as tf.TensorInfo).dataId);
      }),
    );
  }
  record(
    'backprop filter',
    backend === 'wasm' ? 'wasm (rladet)' : backend,
    timeKernel(timing, () => [x(), dy()], ([input, gradient]) =>
      runToCompletion('Conv2DBackpropFilter', { x: input!, dy: gradient! }, { ...common, filterShape }),
    ),
  );
  return measurements;
}

/**
 * Builds a ResNet-like network for a 2x128x128 batch: 7x7/2 stem, BN, ReLU, 3x3/2 max pool, a
 * bottleneck block with a 1x1 projection, a strided bottleneck block, and an FPN-like merge
 * (1x1 lateral, nearest upsampling by 2, 3x3 output conv).
 */
function makeNetwork() {
  const shapes: Record<string, number[]> = {
    stem: [7, 7, 3, 64],
    block1a: [1, 1, 64, 64],
    block1b: [3, 3, 64, 64],
    block1c: [1, 1, 64, 256],
    block1down: [1, 1, 64, 256],
    block2a: [1, 1, 256, 128],
    block2b: [3, 3, 128, 128],
    block2c: [1, 1, 128, 512],
    block2down: [1, 1, 256, 512],
    lateral1: [1, 1, 256, 128],
    lateral2: [1, 1, 512, 128],
    output: [3, 3, 128, 128],
  };
  const weights = Object.fromEntries(
    Object.entries(shapes).map(([name, shape]) => [name, tf.variable(tf.mul(tf.randomNormal(shape), 0.05), true, `bench_${name}`)]),
  );
  const scale = tf.variable(tf.ones([64]), true, 'bench_scale');
  const offset = tf.variable(tf.zeros([64]), true, 'bench_offset');

  let multiplyAdds = 0;
  const conv = (x: tf.Tensor, name: string, stride = 1): tf.Tensor4D => {
    const filter = weights[name] as tf.Variable<tf.Rank.R4>;
    const [kernel, , inChannels] = filter.shape as [number, number, number, number];
    const output = tf.conv2d(x as tf.Tensor4D, filter, stride, (kernel - 1) / 2);
    multiplyAdds += output.size * kernel * kernel * inChannels;
    return output;
  };
  const loss = (images: tf.Tensor4D): tf.Scalar => {
    const stem = conv(images, 'stem', 2);
    const { mean, variance } = tf.moments(stem, [0, 1, 2]);
    const h = tf.maxPool(tf.relu(tf.batchNorm(stem, mean, variance, offset, scale, 1e-5)) as tf.Tensor4D, 3, 2, 1);
    const c2 = tf.relu(tf.add(conv(tf.relu(conv(tf.relu(conv(h, 'block1a')), 'block1b')), 'block1c'), conv(h, 'block1down')));
    const c3 = tf.relu(
      tf.add(conv(tf.relu(conv(tf.relu(conv(c2, 'block2a')), 'block2b', 2)), 'block2c'), conv(c2, 'block2down', 2)),
    );
    const top = conv(c3, 'lateral2');
    const merged = tf.add(conv(c2, 'lateral1'), tf.image.resizeNearestNeighbor(top, [c2.shape[1]!, c2.shape[2]!]));
    return tf.mean(tf.square(conv(merged, 'output')));
  };
  const variables = [...Object.values(weights), scale, offset];
  const dispose = () => variables.forEach((v) => v.dispose());
  tf.tidy(() => loss(tf.zeros([2, 128, 128, 3])));
  const forwardMultiplyAdds = multiplyAdds;
  return { loss, variables, dispose, forwardMultiplyAdds };
}

function benchNetwork(backend: string, timing: Timing): { milliseconds: number; forwardMultiplyAdds: number } {
  const network = makeNetwork();
  const step = () => {
    const images = tf.randomNormal([2, 128, 128, 3]) as tf.Tensor4D;
    const start = performance.now();
    const { value, grads } = tf.variableGrads(() => network.loss(images), network.variables);
    value.dataSync();
    Object.values(grads).forEach((g) => g.dataSync());
    const elapsed = performance.now() - start;
    tf.dispose([images, value, ...Object.values(grads)]);
    return elapsed;
  };
  const tensorsBefore = tf.memory().numTensors;
  const times: number[] = [];
  const calls = timing.repeats + (timing.warmUp ? 1 : 0);
  for (let i = 0; i < calls; i++) {
    const elapsed = step();
    if (!timing.warmUp || i > 0) times.push(elapsed);
  }
  if (tf.memory().numTensors !== tensorsBefore) {
    throw new Error(`${backend}: the network step leaked ${tf.memory().numTensors - tensorsBefore} tensors`);
  }
  network.dispose();
  times.sort((a, b) => a - b);
  return { milliseconds: times[Math.floor(times.length / 2)]!, forwardMultiplyAdds: network.forwardMultiplyAdds };
}

function printTable(measurements: Measurement[]): void {
  const header = ['shape (batch 2)', 'operation', 'backend', 'ms', 'GFLOP/s'];
  const rows = measurements.map((m) => [m.shape, m.operation, m.variant, m.milliseconds.toFixed(1), m.gflops.toFixed(2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const format = (cells: string[]) => cells.map((cell, i) => (i >= 3 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ');
  console.log(format(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(format(row));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'skip-cpu': { type: 'boolean', default: false },
      'cpu-network': { type: 'boolean', default: false },
      repeats: { type: 'string', default: '5' },
    },
  });
  const repeats = Number(values.repeats);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats must be a positive integer, got '${values.repeats}'`);
  const backends = values['skip-cpu'] ? ['wasm'] : ['wasm', 'cpu'];

  registerCpuKernelFixes();
  registerWasmTrainingKernels();
  const measurements: Measurement[] = [];
  const networkTimes: string[] = [];
  for (const backend of backends) {
    await tf.setBackend(backend);
    await tf.ready();
    const timing: Timing = backend === 'cpu' ? { repeats: 1, warmUp: false } : { repeats, warmUp: true };
    for (const shape of SHAPES) measurements.push(...benchShape(shape, backend, timing));
    if (backend === 'cpu' && !values['cpu-network']) continue;
    const { milliseconds, forwardMultiplyAdds } = benchNetwork(backend, timing);
    // Forward + backward of a convolution costs about three times its forward multiply-adds.
    const gflops = (3 * 2 * forwardMultiplyAdds) / milliseconds / 1e6;
    networkTimes.push(`${backend}: ${milliseconds.toFixed(0)} ms per step (about ${gflops.toFixed(2)} GFLOP/s of convolution)`);
  }
  measurements.sort((a, b) => SHAPES.findIndex((s) => s.name === a.shape) - SHAPES.findIndex((s) => s.name === b.shape));
  printTable(measurements);
  console.log('\nforward + backward of a small ResNet-like network, batch 2x128x128x3:');
  for (const line of networkTimes) console.log(`  ${line}`);
}

await main();
