import * as tf from '@tensorflow/tfjs-core';

/**
 * Weight initialisers with a global seed, so that building the same config twice gives the
 * same weights. Convolution weights are HWIO: [kernelH, kernelW, inChannels, outChannels].
 */

let seedCounter = 0;
let baseSeed = 0;

/** Makes every following initialiser call deterministic for the given seed. */
export function setInitSeed(seed: number): void {
  baseSeed = seed;
  seedCounter = 0;
}

function nextSeed(): number {
  seedCounter += 1;
  return baseSeed * 1_000_003 + seedCounter;
}

/** Fan-in and fan-out of an HWIO convolution kernel or an [in, out] dense matrix. */
export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length === 2) return { fanIn: shape[0]!, fanOut: shape[1]! };
  if (shape.length === 4) {
    const receptive = shape[0]! * shape[1]!;
    return { fanIn: shape[2]! * receptive, fanOut: shape[3]! * receptive };
  }
  throw new Error(`fans: expected a rank-2 or rank-4 weight shape, got [${shape.join(', ')}]`);
}

export function normal(shape: readonly number[], std: number, mean = 0): tf.Tensor {
  return tf.randomNormal([...shape], mean, std, 'float32', nextSeed());
}

export function uniform(shape: readonly number[], low: number, high: number): tf.Tensor {
  return tf.randomUniform([...shape], low, high, 'float32', nextSeed());
}

/** Kaiming (He) normal init for ReLU networks, as torch.nn.init.kaiming_normal_. */
export function kaimingNormal(shape: readonly number[], mode: 'fanIn' | 'fanOut' = 'fanOut'): tf.Tensor {
  const { fanIn, fanOut } = fans(shape);
  const fan = mode === 'fanIn' ? fanIn : fanOut;
  return normal(shape, Math.sqrt(2 / fan));
}

/** Xavier (Glorot) uniform init, as MMDetection's `xavier_init(distribution='uniform')` for FPN. */
export function xavierUniform(shape: readonly number[], gain = 1): tf.Tensor {
  const { fanIn, fanOut } = fans(shape);
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return uniform(shape, -bound, bound);
}

/**
 * PyTorch's default convolution and linear init (kaiming_uniform with a = sqrt(5)), whose
 * bound reduces to 1 / sqrt(fanIn).
 */
export function torchDefaultUniform(shape: readonly number[], fanIn = fans(shape).fanIn): tf.Tensor {
  const bound = 1 / Math.sqrt(fanIn);
  return uniform(shape, -bound, bound);
}
