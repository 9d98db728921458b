import {
  type Conv2DBackpropInputAttrs,
  type Conv2DBackpropInputInputs,
  type KernelFunc,
  type TensorInfo,
  backend_util,
  util,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

import { computeConv2dGradientInfo } from './conv2d_gradient_info.ts';
import { KernelScope } from './kernel_scope.ts';

type Conv2DInfo = backend_util.Conv2DInfo;

/** One residue class of input rows (or columns) modulo the stride, and the filter taps that reach it. */
interface Phase {
  /** Residue of (input index + leading pad) modulo the stride. */
  residue: number;
  /** Number of filter taps a with a ≡ residue (mod stride). */
  taps: number;
  /** First and last index U, where the input index is U * stride + residue - leading pad. */
  first: number;
  last: number;
}

/**
 * Builds the Conv2DBackpropInput kernel for wasm: the gradient of a 2-D convolution with respect
 * to its input, computed with the XNNPACK forward Conv2D.
 *
 * Input rows split into `stride` phases by (i + top) mod stride. Within one phase,
 * dx[i] = sum over t of dy[U - t] * W[residue + stride * t] with U = (i + top - residue) / stride,
 * which is a stride-1 correlation of dy with a spatially flipped sub-filter whose input and
 * output channels are swapped. Each of the strideH * strideW phases runs as one forward Conv2D,
 * and strided phases are interleaved into dx. A stride-1 convolution has a single phase, whose
 * output is dx itself. This avoids the zeros that a zero-interleaved dy would multiply.
 *
 * NCHW data goes to `fallback`, the kernel function that tfjs-backend-wasm registered.
 */
export function makeConv2dBackpropInput(fallback: KernelFunc): KernelFunc {
  return ((args: { inputs: Conv2DBackpropInputInputs; backend: BackendWasm; attrs: Conv2DBackpropInputAttrs }) => {
    const { inputs, backend, attrs } = args;
    const dy = inputs.dy as TensorInfo;
    const filter = inputs.filter as TensorInfo;
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs;

    const format = backend_util.convertConv2DDataFormat(dataFormat);
    if (format !== 'channelsLast' || dy.dtype !== 'float32' || filter.dtype !== 'float32') {
      return fallback(args as unknown as Parameters<KernelFunc>[0]);
    }
    const info = computeConv2dGradientInfo({
      kernelName: 'Conv2DBackpropInput',
      inputName: 'input',
      inputShape,
      filterShape: filter.shape as [number, number, number, number],
      dyShape: dy.shape,
      attrs: { strides, pad, dimRoundingMode },
    });

    const scope = new KernelScope(backend);
    try {
      return scope.keep(computeInputGradient(scope, dy, filter, info));
    } finally {
      scope.dispose();
    }
  }) as unknown as KernelFunc;
}

function computeInputGradient(scope: KernelScope, dy: TensorInfo, filter: TensorInfo, info: Conv2DInfo): TensorInfo {
  const { batchSize, inHeight, inWidth, inChannels, strideHeight, strideWidth } = info;
  const rowPhases = splitPhases(info.filterHeight, strideHeight, info.padInfo.top, inHeight);
  const columnPhases = splitPhases(info.filterWidth, strideWidth, info.padInfo.left, inWidth);
  // The sub-filters map dy channels to dx channels, so they are cut from the filter transposed
  // to [kh, kw, C_out, C_in].
  const swappedFilter = scope.run('Transpose', { x: filter }, { perm: [0, 1, 3, 2] });

  if (strideHeight === 1 && strideWidth === 1) {
    const only = convolvePhase(scope, dy, swappedFilter, info, rowPhases[0]!, columnPhases[0]!);
    if (only !== undefined) return only;
  }

  const dx = scope.allocate([batchSize, inHeight, inWidth, inChannels]);
  scope.view(dx).fill(0);
  for (const rows of rowPhases) {
    for (const columns of columnPhases) {
      const phaseOutput = convolvePhase(scope, dy, swappedFilter, info, rows, columns);
      if (phaseOutput === undefined) continue;
      interleavePhase(scope.view(dx), scope.view(phaseOutput), info, rows, columns);
    }
  }
  return dx;
}

function splitPhases(filterSize: number, stride: number, leadingPad: number, inputSize: number): Phase[] {
  const phases: Phase[] = [];
  for (let residue = 0; residue < stride; residue++) {
    phases.push({
      residue,
      taps: Math.max(0, Math.ceil((filterSize - residue) / stride)),
      first: Math.ceil((leadingPad - residue) / stride),
      last: Math.floor((inputSize - 1 + leadingPad - residue) / stride),
    });
  }
  return phases;
}

/**
 * Returns the dx values of one (row, column) phase as [N, rows, columns, C_in], or undefined
 * when they are all zero (no filter tap or no dy value reaches them).
 */
function convolvePhase(
  scope: KernelScope,
  dy: TensorInfo,
  swappedFilter: TensorInfo,
  info: Conv2DInfo,
  rows: Phase,
  columns: Phase,
): TensorInfo | undefined {
  const { outHeight, outWidth } = info;
  if (rows.taps === 0 || columns.taps === 0 || rows.last < rows.first || columns.last < columns.first) return undefined;

  // Output U of the phase convolution reads dy rows U - taps + 1 ... U, so dy is padded by
  // taps - 1 - first rows at the top and last - (OH - 1) at the bottom. XNNPACK takes no
  // negative padding, so a negative pad crops dy instead.
  const top = rows.taps - 1 - rows.first;
  const bottom = rows.last - (outHeight - 1);
  const left = columns.taps - 1 - columns.first;
  const right = columns.last - (outWidth - 1);
  const firstDyRow = Math.max(0, -top);
  const endDyRow = outHeight + Math.min(0, bottom);
  const firstDyColumn = Math.max(0, -left);
  const endDyColumn = outWidth + Math.min(0, right);
  if (endDyRow <= firstDyRow || endDyColumn <= firstDyColumn) return undefined;

  const croppedDy = cropSpatial(scope, dy, firstDyRow, endDyRow, firstDyColumn, endDyColumn);
  const subFilter = gatherSubFilter(scope, swappedFilter, info, rows, columns);
  const explicitPad = [
    [0, 0],
    [Math.max(0, top), Math.max(0, bottom)],
    [Math.max(0, left), Math.max(0, right)],
    [0, 0],
  ];
  const output = scope.run(
    'Conv2D',
    { x: croppedDy, filter: subFilter },
    { strides: 1, pad: explicitPad, dataFormat: 'NHWC', dilations: 1 },
  );
  const expected = [info.batchSize, rows.last - rows.first + 1, columns.last - columns.first + 1, info.inChannels];
  if (!util.arraysEqual(output.shape, expected)) {
    throw new Error(`Conv2DBackpropInput on wasm: phase output has shape [${output.shape}], expected [${expected}]`);
  }
  return output;
}

/** Returns dy[:, firstRow:endRow, firstColumn:endColumn, :], or dy itself when that is all of it. */
function cropSpatial(
  scope: KernelScope,
  dy: TensorInfo,
  firstRow: number,
  endRow: number,
  firstColumn: number,
  endColumn: number,
): TensorInfo {
  const [batchSize, height, width, channels] = dy.shape as [number, number, number, number];
  if (firstRow === 0 && endRow === height && firstColumn === 0 && endColumn === width) return dy;
  const output = scope.allocate([batchSize, endRow - firstRow, endColumn - firstColumn, channels]);
  const source = scope.view(dy);
  const target = scope.view(output);
  const runLength = (endColumn - firstColumn) * channels;
  let out = 0;
  for (let n = 0; n < batchSize; n++) {
    for (let y = firstRow; y < endRow; y++, out += runLength) {
      const start = ((n * height + y) * width + firstColumn) * channels;
      target.set(source.subarray(start, start + runLength), out);
    }
  }
  return output;
}

/**
 * Returns the flipped sub-filter [taps_h, taps_w, C_out, C_in] of one phase: entry (t, u) is the
 * filter tap (residue_h + sh * (taps_h - 1 - t), residue_w + sw * (taps_w - 1 - u)).
 */
function gatherSubFilter(scope: KernelScope, swappedFilter: TensorInfo, info: Conv2DInfo, rows: Phase, columns: Phase): TensorInfo {
  const { filterWidth, inChannels, outChannels, strideHeight, strideWidth } = info;
  const block = inChannels * outChannels;
  const output = scope.allocate([rows.taps, columns.taps, outChannels, inChannels]);
  const source = scope.view(swappedFilter);
  const target = scope.view(output);
  for (let t = 0; t < rows.taps; t++) {
    const a = rows.residue + strideHeight * (rows.taps - 1 - t);
    for (let u = 0; u < columns.taps; u++) {
      const b = columns.residue + strideWidth * (columns.taps - 1 - u);
      const start = (a * filterWidth + b) * block;
      target.set(source.subarray(start, start + block), (t * columns.taps + u) * block);
    }
  }
  return output;
}

/** Copies the phase output to dx rows U * sh + residue - top and columns V * sw + residue - left. */
function interleavePhase(dx: Float32Array, phaseOutput: Float32Array, info: Conv2DInfo, rows: Phase, columns: Phase): void {
  const { batchSize, inHeight, inWidth, inChannels, strideHeight, strideWidth } = info;
  const firstRow = rows.first * strideHeight + rows.residue - info.padInfo.top;
  const firstColumn = columns.first * strideWidth + columns.residue - info.padInfo.left;
  const phaseRows = rows.last - rows.first + 1;
  const phaseColumns = columns.last - columns.first + 1;
  let source = 0;
  for (let n = 0; n < batchSize; n++) {
    for (let r = 0; r < phaseRows; r++) {
      let target = ((n * inHeight + firstRow + r * strideHeight) * inWidth + firstColumn) * inChannels;
      for (let c = 0; c < phaseColumns; c++, source += inChannels, target += strideWidth * inChannels) {
        dx.set(phaseOutput.subarray(source, source + inChannels), target);
      }
    }
  }
}
