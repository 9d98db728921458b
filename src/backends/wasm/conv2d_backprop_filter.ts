import {
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropFilterInputs,
  type KernelFunc,
  type TensorInfo,
  backend_util,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

import { computeConv2dGradientInfo } from './conv2d_gradient_info.ts';
import { KernelScope, copyRows } from './kernel_scope.ts';

/**
 * Maximum number of float32 elements in one patch matrix (64 MiB). Larger problems are cut
 * into chunks of whole output rows whose partial filter gradients are summed, so the k*k
 * duplication of the input never needs more heap than this.
 */
const DEFAULT_MAX_PATCH_ELEMENTS = 1 << 24;
let maxPatchElements = DEFAULT_MAX_PATCH_ELEMENTS;

/**
 * Sets the maximum patch matrix size in elements (a value below one output row still
 * processes one row per chunk) and returns the previous value. Tests use it to reach the
 * chunked path with small tensors.
 */
export function setMaxPatchElements(elements: number = DEFAULT_MAX_PATCH_ELEMENTS): number {
  const previous = maxPatchElements;
  maxPatchElements = elements;
  return previous;
}

type Conv2DInfo = backend_util.Conv2DInfo;

/**
 * Gradient of a 2-D convolution with respect to its filter, for NHWC tensors on wasm.
 *
 * dW[a, b, ci, co] = sum over (n, i, j) of x[n, i*sh + a - top, j*sw + b - left, ci] * dy[n, i, j, co].
 * The input patches are copied into a matrix (im2col) on the wasm heap and multiplied with dy by
 * BatchMatMul, whose untransposed single-batch case runs on XNNPACK. XNNPACK packs the right-hand
 * operand on every call, so the smaller of dy and the patch matrix goes on the right.
 *
 * NOTE: tfjs-backend-wasm 4.22 caches that XNNPACK operator by the data id of the right-hand
 * operand, not by its shape. The right-hand operand here is a fresh patch matrix or a view of dy
 * or x in the one shape every call gives it. Another view of the same data in another shape
 * would reuse the operator with stale sizes.
 */
export function conv2dBackpropFilter(args: {
  inputs: Conv2DBackpropFilterInputs;
  backend: BackendWasm;
  attrs: Conv2DBackpropFilterAttrs;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs.x as TensorInfo;
  const dy = inputs.dy as TensorInfo;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  const dilations = (attrs as { dilations?: number | [number, number] }).dilations ?? 1;

  const format = backend_util.convertConv2DDataFormat(dataFormat);
  if (format !== 'channelsLast') {
    throw new Error(`Conv2DBackpropFilter on wasm: dataFormat must be 'NHWC', got '${dataFormat}'`);
  }
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`Conv2DBackpropFilter on wasm: x and dy must be float32, got ${x.dtype} and ${dy.dtype}`);
  }
  if (!backend_util.tupleValuesAreOne(dilations)) {
    throw new Error(`Conv2DBackpropFilter on wasm: dilations must be 1, got ${String(dilations)}`);
  }
  const info = computeConv2dGradientInfo({
    kernelName: 'Conv2DBackpropFilter',
    inputName: 'x',
    inputShape: x.shape as [number, number, number, number],
    filterShape,
    dyShape: dy.shape,
    attrs: { strides, pad, dimRoundingMode },
  });

  const scope = new KernelScope(backend);
  try {
    return scope.keep(computeFilterGradient(scope, x, dy, info));
  } finally {
    scope.dispose();
  }
}

export const conv2dBackpropFilterKernelFunc = conv2dBackpropFilter as unknown as KernelFunc;

function computeFilterGradient(scope: KernelScope, x: TensorInfo, dy: TensorInfo, info: Conv2DInfo): TensorInfo {
  const { batchSize, outHeight, outWidth, inChannels, outChannels, filterHeight, filterWidth } = info;
  const patchSize = filterHeight * filterWidth * inChannels;
  const outputRows = batchSize * outHeight;
  const pads = info.padInfo;
  // A 1x1 convolution with stride 1 and no padding reads every input pixel exactly once, so
  // the input itself is the patch matrix.
  const pointwise =
    filterHeight === 1 &&
    filterWidth === 1 &&
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    pads.top === 0 &&
    pads.left === 0 &&
    pads.bottom === 0 &&
    pads.right === 0;
  const patchesOnLeft = outChannels <= patchSize;
  const rowsPerChunk = pointwise ? outputRows : Math.max(1, Math.floor(maxPatchElements / (patchSize * outWidth)));

  // Channel-major patches are gathered from x in [N, C_in, H, W] order, so that runs along a
  // row of the input are contiguous. With a column stride s, each row is also split into its s
  // column phases (columns p, p + s, p + 2s, ...), so that those runs stay contiguous.
  let xChannelsFirst: TensorInfo | undefined;
  if (patchesOnLeft && !pointwise) {
    xChannelsFirst = scope.run('Transpose', { x }, { perm: [0, 3, 1, 2] });
    if (info.strideWidth > 1) xChannelsFirst = splitColumnPhases(scope, xChannelsFirst, info);
  }

  let total: TensorInfo | undefined;
  for (let firstRow = 0; firstRow < outputRows; firstRow += rowsPerChunk) {
    const endRow = Math.min(outputRows, firstRow + rowsPerChunk);
    const pixels = (endRow - firstRow) * outWidth;
    const dyChunk = copyRows(scope, dy, outWidth * outChannels, firstRow, endRow, [1, pixels, outChannels]);

    let product: TensorInfo;
    if (patchesOnLeft) {
      // [patchSize, pixels] x [pixels, C_out] = [patchSize, C_out].
      let patches: TensorInfo;
      if (pointwise) {
        const xChunk = copyRows(scope, x, outWidth * inChannels, firstRow, endRow, [pixels, inChannels]);
        patches = scope.reshape(scope.run('Transpose', { x: xChunk }, { perm: [1, 0] }), [1, inChannels, pixels]);
      } else {
        patches = scope.allocate([1, patchSize, pixels]);
        fillPatchesChannelMajor(scope.view(patches), scope.view(xChannelsFirst!), info, firstRow, endRow);
      }
      product = scope.run('BatchMatMul', { a: patches, b: dyChunk }, { transposeA: false, transposeB: false });
    } else {
      // [C_out, pixels] x [pixels, patchSize] = [C_out, patchSize], transposed at the end.
      const dyRows = scope.reshape(dyChunk, [pixels, outChannels]);
      const dyTransposed = scope.reshape(scope.run('Transpose', { x: dyRows }, { perm: [1, 0] }), [1, outChannels, pixels]);
      let patches: TensorInfo;
      if (pointwise) {
        patches = copyRows(scope, x, outWidth * inChannels, firstRow, endRow, [1, pixels, inChannels]);
      } else {
        patches = scope.allocate([1, pixels, patchSize]);
        fillPatchesPixelMajor(scope.view(patches), scope.view(x), info, firstRow, endRow);
      }
      product = scope.run('BatchMatMul', { a: dyTransposed, b: patches }, { transposeA: false, transposeB: false });
    }
    total = total === undefined ? product : scope.run('Add', { a: total, b: product });
  }

  const filterShape = [filterHeight, filterWidth, inChannels, outChannels];
  if (patchesOnLeft) return scope.reshape(total!, filterShape);
  const transposed = scope.run('Transpose', { x: scope.reshape(total!, [outChannels, patchSize]) }, { perm: [1, 0] });
  return scope.reshape(transposed, filterShape);
}

/** First and end output column whose tap at filter column `b` reads inside the input. */
function validColumns(info: Conv2DInfo, b: number): [number, number] {
  const offset = b - info.padInfo.left;
  const first = Math.max(0, Math.ceil(-offset / info.strideWidth));
  const end = Math.min(info.outWidth, Math.floor((info.inWidth - 1 - offset) / info.strideWidth) + 1);
  return [first, Math.max(first, end)];
}

/** Columns of one column phase of an input row: ceil(W / strideWidth). */
function phaseWidth(info: Conv2DInfo): number {
  return Math.ceil(info.inWidth / info.strideWidth);
}

/**
 * Returns x `[N, C_in, H, W]` rearranged as `[N, C_in, H, s, ceil(W / s)]` for the column stride
 * s: element (n, c, y, p, k) is column k*s + p of row y. The slots past the end of a short
 * phase are left unset, and no tap reads them.
 */
function splitColumnPhases(scope: KernelScope, xChannelsFirst: TensorInfo, info: Conv2DInfo): TensorInfo {
  const { batchSize, inChannels, inHeight, inWidth, strideWidth } = info;
  const width = phaseWidth(info);
  const rows = batchSize * inChannels * inHeight;
  const phases = scope.allocate([rows * strideWidth * width]);
  const target = scope.view(phases);
  const source = scope.view(xChannelsFirst);
  for (let row = 0; row < rows; row++) {
    const rowStart = row * inWidth;
    for (let p = 0; p < strideWidth; p++) {
      let out = (row * strideWidth + p) * width;
      for (let column = p; column < inWidth; column += strideWidth) target[out++] = source[rowStart + column]!;
    }
  }
  return phases;
}

/**
 * Writes patches[(a, b, ci), (g, j)] = x[n, i*sh + a - top, j*sw + b - left, ci] for the output
 * rows g = n*OH + i in [firstRow, endRow), reading x in the layout of `splitColumnPhases`, which
 * for a column stride of 1 is [N, C_in, H, W]. Taps outside the input are zero.
 */
function fillPatchesChannelMajor(
  patches: Float32Array,
  xPhases: Float32Array,
  info: Conv2DInfo,
  firstRow: number,
  endRow: number,
): void {
  const { inHeight, inChannels, outHeight, outWidth, strideHeight, strideWidth, filterHeight, filterWidth } = info;
  const width = phaseWidth(info);
  const pixels = (endRow - firstRow) * outWidth;
  const mergeableRows = strideHeight === 1 && strideWidth === 1 && outWidth === info.inWidth;
  for (let a = 0; a < filterHeight; a++) {
    for (let b = 0; b < filterWidth; b++) {
      const [firstColumn, endColumn] = validColumns(info, b);
      // Output column j reads input column j*s + columnOffset, which is element j + phaseStart
      // of column phase `phase`.
      const columnOffset = b - info.padInfo.left;
      const phase = ((columnOffset % strideWidth) + strideWidth) % strideWidth;
      const phaseStart = (columnOffset - phase) / strideWidth;
      for (let c = 0; c < inChannels; c++) {
        let out = ((a * filterWidth + b) * inChannels + c) * pixels;
        for (let g = firstRow; g < endRow; ) {
          const n = Math.floor(g / outHeight);
          const i = g - n * outHeight;
          const y = i * strideHeight + a - info.padInfo.top;
          if (y < 0 || y >= inHeight || firstColumn === endColumn) {
            patches.fill(0, out, out + outWidth);
            g += 1;
            out += outWidth;
            continue;
          }
          // With unit strides and equal input and output widths, consecutive output rows read
          // consecutive input rows, so a run of rows is one copy. The columns outside
          // [firstColumn, endColumn) then contain values of the neighbouring rows and are cleared.
          const rowsInRun = mergeableRows ? Math.min(endRow - g, outHeight - i, inHeight - y) : 1;
          const rowStart = ((((n * inChannels + c) * inHeight + y) * strideWidth + phase) * width) + phaseStart;
          const runEnd = rowStart + (rowsInRun - 1) * outWidth + endColumn;
          patches.set(xPhases.subarray(rowStart + firstColumn, runEnd), out + firstColumn);
          for (let row = 0; row < rowsInRun; row++, out += outWidth) {
            for (let j = 0; j < firstColumn; j++) patches[out + j] = 0;
            for (let j = endColumn; j < outWidth; j++) patches[out + j] = 0;
          }
          g += rowsInRun;
        }
      }
    }
  }
}

/**
 * Writes patches[(g, j), (a, b, ci)], the transpose of the channel-major layout, reading x in
 * NHWC order so that each tap copies C_in contiguous values.
 */
function fillPatchesPixelMajor(patches: Float32Array, x: Float32Array, info: Conv2DInfo, firstRow: number, endRow: number): void {
  const { inHeight, inWidth, inChannels, outHeight, outWidth, strideHeight, strideWidth, filterHeight, filterWidth } = info;
  const patchSize = filterHeight * filterWidth * inChannels;
  let out = 0;
  for (let g = firstRow; g < endRow; g++) {
    const n = Math.floor(g / outHeight);
    const i = g - n * outHeight;
    for (let j = 0; j < outWidth; j++, out += patchSize) {
      for (let a = 0; a < filterHeight; a++) {
        const y = i * strideHeight + a - info.padInfo.top;
        for (let b = 0; b < filterWidth; b++) {
          const column = j * strideWidth + b - info.padInfo.left;
          const target = out + (a * filterWidth + b) * inChannels;
          if (y < 0 || y >= inHeight || column < 0 || column >= inWidth) {
            patches.fill(0, target, target + inChannels);
          } else {
            const source = ((n * inHeight + y) * inWidth + column) * inChannels;
            patches.set(x.subarray(source, source + inChannels), target);
          }
        }
      }
    }
  }
}
