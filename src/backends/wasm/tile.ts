import { type KernelFunc, type TensorInfo, type TileAttrs, type TileInputs, util } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type HeapArray = Float32Array | Int32Array | Uint8Array;

/** Below this many elements, a replicated innermost row is written element by element. */
const SHORT_ROW = 64;

/**
 * Builds the Tile kernel for wasm. The kernel of tfjs-backend-wasm 4.22 computes the source
 * index of every output element separately, and the gradient of tf.batchNorm tiles its
 * per-channel factor over the whole activation. For a 2x400x672x64 output that kernel took
 * 1.6 s and this one 0.09 s (single-threaded wasm on a shared 2-core x86 machine). This one
 * copies each source row once and then doubles the copied blocks with `copyWithin`, so its
 * cost is close to that of writing the output.
 * String tensors go to `fallback`, the original kernel function.
 */
export function makeTile(fallback: KernelFunc): KernelFunc {
  return ((args: { inputs: TileInputs; backend: BackendWasm; attrs: TileAttrs }) => {
    const { inputs, backend, attrs } = args;
    const x = inputs.x as TensorInfo;
    if (x.dtype === 'string') return fallback(args as unknown as Parameters<KernelFunc>[0]);
    const reps = attrs.reps;
    if (reps.length !== x.shape.length) {
      throw new Error(`Tile on wasm: reps [${reps}] must have one entry per dimension of x [${x.shape}]`);
    }

    const outShape = x.shape.map((size, axis) => size * reps[axis]!);
    const output = backend.makeOutput(outShape, x.dtype) as TensorInfo;
    if (util.sizeFromShape(outShape) === 0) return output;
    const source = backend.typedArrayFromHeap(x) as HeapArray;
    const target = backend.typedArrayFromHeap(output) as HeapArray;
    if (x.shape.length === 0) {
      target[0] = source[0]!;
      return output;
    }
    // outputStrides[axis] is the output size of one index step along `axis`.
    const outputStrides = [...util.computeStrides(outShape), 1];
    const sourceStrides = [...util.computeStrides(x.shape), 1];
    tileAxis(source, target, x.shape, reps, sourceStrides, outputStrides, 0, 0, 0);
    return output;
  }) as unknown as KernelFunc;
}

/** Writes the tiled block of `axis` (shape[axis] * reps[axis] output steps) at `targetOffset`. */
function tileAxis(
  source: HeapArray,
  target: HeapArray,
  shape: number[],
  reps: number[],
  sourceStrides: number[],
  outputStrides: number[],
  axis: number,
  sourceOffset: number,
  targetOffset: number,
): void {
  const size = shape[axis]!;
  const repeats = reps[axis]!;
  const innermost = axis === shape.length - 1;

  if (innermost && size * repeats < SHORT_ROW) {
    let out = targetOffset;
    for (let r = 0; r < repeats; r++) {
      for (let e = 0; e < size; e++) target[out++] = source[sourceOffset + e]!;
    }
    return;
  }
  if (innermost) {
    target.set(source.subarray(sourceOffset, sourceOffset + size), targetOffset);
  } else {
    for (let i = 0; i < size; i++) {
      const nextSource = sourceOffset + i * sourceStrides[axis]!;
      tileAxis(source, target, shape, reps, sourceStrides, outputStrides, axis + 1, nextSource, targetOffset + i * outputStrides[axis]!);
    }
  }

  // The first copy of the block is written. Doubling it fills the remaining repeats.
  const block = size * outputStrides[axis]!;
  const total = block * repeats;
  for (let filled = block; filled < total; ) {
    const length = Math.min(filled, total - filled);
    target.copyWithin(targetOffset + filled, targetOffset, targetOffset + length);
    filled += length;
  }
}
