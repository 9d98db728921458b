/**
 * Training kernels for the tfjs wasm backend (@tensorflow/tfjs-backend-wasm 4.22).
 *
 * That package leaves training of a ResNet + FPN + RetinaNet detector broken or slow:
 * - Conv2DBackpropFilter is not registered, so the gradient of every convolution throws.
 * - Its Conv2DBackpropInput is a direct loop, about 10x slower than the XNNPACK forward Conv2D
 *   (tools/bench_kernels.ts prints both).
 * - Its MaxPoolGrad sends the gradient of windows whose values are all <= 0 to the wrong place.
 * - UnsortedSegmentSum, which the gradient of tf.gather needs, is not registered.
 * - Its Tile computes a source index per element, and the gradient of tf.batchNorm tiles a
 *   per-channel factor over the whole activation.
 * - Its Identity copies the input, and the engine runs Identity on every tensor saved for a
 *   gradient.
 * - Its Sum and Mean transpose the reduced axes to the end first, so reducing the leading axes
 *   of NHWC (bias and normalisation gradients) copies the whole tensor.
 * - Its SplitV copies one innermost row per call, which is slow for the short channel rows of
 *   the concat gradient in RLA-ResNet blocks.
 * - Its FusedBatchNorm takes a square root and a division per element.
 * The convolution kernels here are built on the wasm Conv2D, BatchMatMul and Transpose kernels,
 * called as kernel functions on TensorInfos so that the engine tracks only the outer kernel.
 * Identity shares its input's data, and the others are loops over the wasm heap.
 *
 * The tfjs-node 'tensorflow' backend registers native versions of all ten kernels
 * (Conv2DBackpropFilter, Conv2DBackpropInput, MaxPoolGrad, UnsortedSegmentSum, Tile, Identity,
 * Sum, Mean, SplitV, FusedBatchNorm), so replacing them on wasm leaves the GPU path as it is.
 *
 * NOTE: the wasm ResizeNearestNeighborGrad is kept although it ignores halfPixelCenters. It is
 * correct for the default halfPixelCenters = false that FPN upsampling uses.
 */
import { type KernelConfig, type KernelFunc, getKernel, registerKernel, unregisterKernel } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';

import { conv2dBackpropFilterKernelFunc } from './wasm/conv2d_backprop_filter.ts';
import { makeConv2dBackpropInput } from './wasm/conv2d_backprop_input.ts';
import { makeFusedBatchNorm } from './wasm/fused_batch_norm.ts';
import { makeIdentity } from './wasm/identity.ts';
import { maxPoolGradKernelFunc } from './wasm/max_pool_grad.ts';
import { makeMean, makeSum } from './wasm/reduce.ts';
import { makeSplitV } from './wasm/split_v.ts';
import { makeTile } from './wasm/tile.ts';
import { unsortedSegmentSumKernelFunc } from './wasm/unsorted_segment_sum.ts';

const BACKEND = 'wasm';

/** The Conv2DBackpropInput kernel function of tfjs-backend-wasm, kept as the NCHW fallback. */
let originalConv2dBackpropInput: KernelConfig | undefined;

function replaceKernel(config: KernelConfig): void {
  if (getKernel(config.kernelName, BACKEND) !== undefined) unregisterKernel(config.kernelName, BACKEND);
  registerKernel(config);
}

/**
 * Registers the kernels above for the 'wasm' backend. Calling it again does nothing. It works
 * before or after `tf.setBackend('wasm')`, because every kernel that wraps an original keeps
 * the setup function of the original, which its fallback needs.
 */
export function registerWasmTrainingKernels(): void {
  if (originalConv2dBackpropInput !== undefined) return;
  const original = getKernel('Conv2DBackpropInput', BACKEND);
  if (original === undefined) {
    throw new Error("registerWasmTrainingKernels: tfjs-backend-wasm registered no Conv2DBackpropInput kernel to wrap");
  }
  originalConv2dBackpropInput = original;

  replaceKernel({
    kernelName: 'Conv2DBackpropInput',
    backendName: BACKEND,
    kernelFunc: makeConv2dBackpropInput(original.kernelFunc),
    ...(original.setupFunc !== undefined ? { setupFunc: original.setupFunc } : {}),
  });
  replaceKernel({ kernelName: 'Conv2DBackpropFilter', backendName: BACKEND, kernelFunc: conv2dBackpropFilterKernelFunc });
  replaceKernel({ kernelName: 'MaxPoolGrad', backendName: BACKEND, kernelFunc: maxPoolGradKernelFunc });
  replaceKernel({ kernelName: 'UnsortedSegmentSum', backendName: BACKEND, kernelFunc: unsortedSegmentSumKernelFunc });

  wrapKernel('Tile', makeTile);
  wrapKernel('Identity', makeIdentity);
  wrapKernel('Sum', makeSum);
  wrapKernel('Mean', makeMean);
  wrapKernel('SplitV', makeSplitV);
  wrapKernel('FusedBatchNorm', makeFusedBatchNorm);
}

/**
 * Replaces the wasm kernel `kernelName` with `makeKernel(original kernel function)`, keeping the
 * original setup function, which the fallback to the original needs. Does nothing when
 * tfjs-backend-wasm registered no such kernel.
 */
function wrapKernel(kernelName: string, makeKernel: (fallback: KernelFunc) => KernelFunc): void {
  const original = getKernel(kernelName, BACKEND);
  if (original === undefined) return;
  replaceKernel({
    kernelName,
    backendName: BACKEND,
    kernelFunc: makeKernel(original.kernelFunc),
    ...(original.setupFunc !== undefined ? { setupFunc: original.setupFunc } : {}),
  });
}

/** The kernel function that tfjs-backend-wasm registered for Conv2DBackpropInput, for benchmarks and tests. */
export function originalConv2dBackpropInputKernel(): KernelFunc {
  registerWasmTrainingKernels();
  return originalConv2dBackpropInput!.kernelFunc;
}
