import {
  type KernelFunc,
  type TensorInfo,
  type UnsortedSegmentSumAttrs,
  type UnsortedSegmentSumInputs,
  util,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/**
 * UnsortedSegmentSum for wasm, which tfjs-backend-wasm 4.22 lacks and the gradient of tf.gather
 * needs. `segmentIds` indexes the leading dimensions of `x`:
 * output[s, ...] = sum of x[k, ...] over every k with segmentIds[k] = s.
 * Ids outside [0, numSegments) are dropped, as the tfjs cpu backend does.
 */
export function unsortedSegmentSum(args: {
  inputs: UnsortedSegmentSumInputs;
  backend: BackendWasm;
  attrs: UnsortedSegmentSumAttrs;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs.x as TensorInfo;
  const segmentIds = inputs.segmentIds as TensorInfo;
  const { numSegments } = attrs;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum on wasm: x must be float32 or int32, got ${x.dtype}`);
  }
  if (segmentIds.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum on wasm: segmentIds must be int32, got ${segmentIds.dtype}`);
  }
  const idShape = segmentIds.shape;
  if (!util.arraysEqual(x.shape.slice(0, idShape.length), idShape)) {
    throw new Error(`UnsortedSegmentSum on wasm: segmentIds shape [${idShape}] is not a prefix of x shape [${x.shape}]`);
  }

  const innerSize = util.sizeFromShape(x.shape.slice(idShape.length));
  const output = backend.makeOutput([numSegments, ...x.shape.slice(idShape.length)], x.dtype) as TensorInfo;
  const outputValues = backend.typedArrayFromHeap(output) as Float32Array | Int32Array;
  const xValues = backend.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const ids = backend.typedArrayFromHeap(segmentIds) as Int32Array;
  outputValues.fill(0);
  for (let k = 0; k < ids.length; k++) {
    const segment = ids[k]!;
    if (segment < 0 || segment >= numSegments) continue;
    const source = k * innerSize;
    const target = segment * innerSize;
    for (let e = 0; e < innerSize; e++) outputValues[target + e] += xValues[source + e]!;
  }
  return output;
}

export const unsortedSegmentSumKernelFunc = unsortedSegmentSum as unknown as KernelFunc;
