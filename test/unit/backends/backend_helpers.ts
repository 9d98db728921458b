import * as tf from '@tensorflow/tfjs-core';

/** Returns deterministic values in [-1, 1) (mulberry32), so that every backend gets the same data. */
export function randomValues(size: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    values[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return values;
}

/** Output values and shapes of a computation on one backend. */
export interface BackendOutputs {
  values: Float32Array[];
  shapes: number[][];
}

/** Runs `compute` on `backend` and returns its outputs' values and shapes. Every tensor it made is freed. */
export async function outputsOn(backend: string, compute: () => tf.Tensor | tf.Tensor[]): Promise<BackendOutputs> {
  await tf.setBackend(backend);
  const outputs = tf.tidy(compute);
  const list = Array.isArray(outputs) ? outputs : [outputs];
  const result = {
    values: list.map((tensor) => Float32Array.from(tensor.dataSync() as ArrayLike<number>)),
    shapes: list.map((tensor) => [...tensor.shape]),
  };
  tf.dispose(list);
  return result;
}

/** Returns the largest absolute difference divided by the largest magnitude of `expected`. */
export function relativeError(actual: Float32Array, expected: Float32Array): number {
  let maxDifference = 0;
  let maxMagnitude = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDifference = Math.max(maxDifference, Math.abs(actual[i]! - expected[i]!));
    maxMagnitude = Math.max(maxMagnitude, Math.abs(expected[i]!));
  }
  return maxMagnitude === 0 ? maxDifference : maxDifference / maxMagnitude;
}

/** Counts of live tensors and of the active backend's data ids. */
export function liveCounts(): { tensors: number; dataIds: number } {
  return { tensors: tf.memory().numTensors, dataIds: tf.engine().backend.numDataIds() };
}
