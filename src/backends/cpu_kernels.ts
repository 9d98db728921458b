/**
 * Corrected kernels for the tfjs cpu backend (@tensorflow/tfjs-backend-cpu 4.22).
 *
 * Its ResizeNearestNeighborGrad offsets dy by the batch stride of the input image instead of
 * the batch stride of dy, so every image after the first gets a wrong gradient (the FPN
 * top-down path with batch size > 1). It also ignores `halfPixelCenters`. The replacement
 * scatters each dy value to the source pixel that the cpu forward kernel read, with the same
 * double-precision arithmetic.
 *
 * The tfjs-node 'tensorflow' backend registers its own native ResizeNearestNeighborGrad.
 */
import {
  type KernelFunc,
  type ResizeNearestNeighborGradAttrs,
  type ResizeNearestNeighborGradInputs,
  type TensorInfo,
  getKernel,
  registerKernel,
  unregisterKernel,
} from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

interface CpuBackend {
  data: { get(dataId: object): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo;
}

/** Source index that the forward resize reads for output index `index`, as the cpu kernel computes it. */
function sourceIndex(index: number, ratio: number, inputSize: number, alignCorners: boolean, halfPixelCenters: boolean): number {
  const fraction = halfPixelCenters ? ratio * (index + 0.5) : ratio * index;
  const nearest = Math.min(inputSize - 1, alignCorners ? Math.round(fraction) : Math.floor(fraction));
  return halfPixelCenters ? Math.max(0, nearest) : nearest;
}

function sizeRatio(inputSize: number, outputSize: number, alignCorners: boolean): number {
  return alignCorners && outputSize > 1 ? (inputSize - 1) / (outputSize - 1) : inputSize / outputSize;
}

function resizeNearestNeighborGrad(args: {
  inputs: ResizeNearestNeighborGradInputs;
  backend: CpuBackend;
  attrs: ResizeNearestNeighborGradAttrs;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const images = inputs.images as TensorInfo;
  const dy = inputs.dy as TensorInfo;
  const alignCorners = attrs.alignCorners === true;
  const halfPixelCenters = attrs.halfPixelCenters === true;
  const [batch, inHeight, inWidth, channels] = images.shape as [number, number, number, number];
  const [, outHeight, outWidth] = dy.shape as [number, number, number, number];

  const dyValues = backend.data.get(dy.dataId).values;
  const dx = new Float32Array(batch * inHeight * inWidth * channels);
  const rowRatio = sizeRatio(inHeight, outHeight, alignCorners);
  const columnRatio = sizeRatio(inWidth, outWidth, alignCorners);
  const sourceColumns = Array.from({ length: outWidth }, (_, c) => sourceIndex(c, columnRatio, inWidth, alignCorners, halfPixelCenters));

  let dyOffset = 0;
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < outHeight; r++) {
      const sourceRow = sourceIndex(r, rowRatio, inHeight, alignCorners, halfPixelCenters);
      const rowOffset = (b * inHeight + sourceRow) * inWidth;
      for (let c = 0; c < outWidth; c++) {
        const target = (rowOffset + sourceColumns[c]!) * channels;
        for (let d = 0; d < channels; d++) dx[target + d] += dyValues[dyOffset++]!;
      }
    }
  }
  return backend.makeTensorInfo(images.shape, 'float32', dx);
}

let registered = false;

/** Replaces the cpu ResizeNearestNeighborGrad with the corrected one. Calling it again does nothing. */
export function registerCpuKernelFixes(): void {
  if (registered) return;
  registered = true;
  if (getKernel('ResizeNearestNeighborGrad', 'cpu') !== undefined) unregisterKernel('ResizeNearestNeighborGrad', 'cpu');
  registerKernel({
    kernelName: 'ResizeNearestNeighborGrad',
    backendName: 'cpu',
    kernelFunc: resizeNearestNeighborGrad as unknown as KernelFunc,
  });
}
