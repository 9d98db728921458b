import { type KernelFunc, type MaxPoolGradAttrs, type MaxPoolGradInputs, type TensorInfo, backend_util } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/**
 * Gradient of a 2-D max pool for NHWC float32 tensors on wasm: each dy value goes to the first
 * maximum of its window in row-major order, as in the tfjs cpu backend.
 *
 * It replaces the MaxPoolGrad of tfjs-backend-wasm 4.22, which starts its running maximum at
 * std::numeric_limits<float>::min() (the smallest positive float) and keeps the last of equal
 * values. That kernel misroutes the gradient of every window whose values are all zero or
 * negative, such as all-zero windows after a ReLU. It is also slower: for a 2x400x672x64 input
 * with a 3x3/2 window it took 2.6 s and this loop 0.5 s (single-threaded wasm on a shared
 * 2-core x86 machine).
 */
export function maxPoolGrad(args: { inputs: MaxPoolGradInputs; backend: BackendWasm; attrs: MaxPoolGradAttrs }): TensorInfo {
  const { inputs, backend, attrs } = args;
  const dy = inputs.dy as TensorInfo;
  const input = inputs.input as TensorInfo;
  const { filterSize, strides, pad, dimRoundingMode } = attrs;
  if (input.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`MaxPoolGrad on wasm: input and dy must be float32, got ${input.dtype} and ${dy.dtype}`);
  }
  const info = backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth, strideHeight, strideWidth } = info;
  const { effectiveFilterHeight, effectiveFilterWidth, dilationHeight, dilationWidth } = info;

  const dx = backend.makeOutput(input.shape, 'float32') as TensorInfo;
  const dxValues = backend.typedArrayFromHeap(dx) as Float32Array;
  const xValues = backend.typedArrayFromHeap(input) as Float32Array;
  const dyValues = backend.typedArrayFromHeap(dy) as Float32Array;
  dxValues.fill(0);

  // For each output pixel, `taps` contains the x offsets of the window's pixels inside the
  // input, in row-major order. Each channel then scans them with its running maximum in locals.
  const taps = new Int32Array(Math.ceil(effectiveFilterHeight / dilationHeight) * Math.ceil(effectiveFilterWidth / dilationWidth));
  let dyOffset = 0;
  for (let n = 0; n < batchSize; n++) {
    for (let i = 0; i < outHeight; i++) {
      const rowStart = i * strideHeight - info.padInfo.top;
      for (let j = 0; j < outWidth; j++, dyOffset += channels) {
        const columnStart = j * strideWidth - info.padInfo.left;
        let tapCount = 0;
        for (let a = 0; a < effectiveFilterHeight; a += dilationHeight) {
          const y = rowStart + a;
          if (y < 0 || y >= inHeight) continue;
          for (let b = 0; b < effectiveFilterWidth; b += dilationWidth) {
            const x = columnStart + b;
            if (x >= 0 && x < inWidth) taps[tapCount++] = ((n * inHeight + y) * inWidth + x) * channels;
          }
        }
        if (tapCount === 0) continue;
        for (let c = 0; c < channels; c++) {
          let bestIndex = taps[0]! + c;
          let best = xValues[bestIndex]!;
          for (let t = 1; t < tapCount; t++) {
            const index = taps[t]! + c;
            const value = xValues[index]!;
            if (value > best) {
              best = value;
              bestIndex = index;
            }
          }
          dxValues[bestIndex] += dyValues[dyOffset + c]!;
        }
      }
    }
  }
  return dx;
}

export const maxPoolGradKernelFunc = maxPoolGrad as unknown as KernelFunc;
