import { type DataType, type KernelFunc, type NamedAttrMap, type TensorInfo, getKernel, util } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type KernelInputs = Record<string, TensorInfo> | TensorInfo[];

/**
 * Runs wasm kernel functions from inside another kernel and frees every intermediate
 * TensorInfo when the outer kernel ends.
 *
 * Calling `kernelFunc` directly, in place of a tfjs op, keeps the intermediates out of the
 * engine's bookkeeping, so `tf.memory()` and the gradient tape see only the outer kernel.
 * The result that leaves the kernel must be passed to `keep()`, and `dispose()` must run in a
 * `finally` block so that a throwing kernel leaks nothing either.
 */
export class KernelScope {
  private readonly temporaries: TensorInfo[] = [];

  constructor(readonly backend: BackendWasm) {}

  /** Runs the wasm kernel registered under `kernelName` and tracks its output. */
  run(kernelName: string, inputs: KernelInputs, attrs: object = {}): TensorInfo {
    const config = getKernel(kernelName, 'wasm');
    if (config === undefined) {
      throw new Error(`wasm kernel '${kernelName}' is not registered. Import '@tensorflow/tfjs-backend-wasm' before running it.`);
    }
    return this.runFunction(config.kernelFunc, inputs, attrs);
  }

  /** Runs a kernel function that is not (or no longer) in the registry, such as a replaced original. */
  runFunction(kernelFunc: KernelFunc, inputs: KernelInputs, attrs: object = {}): TensorInfo {
    const output = kernelFunc({
      inputs: inputs as unknown as Record<string, TensorInfo>,
      backend: this.backend,
      attrs: attrs as NamedAttrMap,
    });
    if (Array.isArray(output)) throw new Error('KernelScope.run expects a kernel with a single output');
    this.temporaries.push(output);
    return output;
  }

  /** Allocates an uninitialised tensor on the wasm heap and tracks it. */
  allocate(shape: number[], dtype: DataType = 'float32'): TensorInfo {
    const output = this.backend.makeOutput(shape, dtype) as TensorInfo;
    this.temporaries.push(output);
    return output;
  }

  /** Returns a tracked alias of `info` with another shape of the same size. */
  reshape(info: TensorInfo, shape: number[]): TensorInfo {
    return this.run('Reshape', { x: info }, { shape });
  }

  /**
   * Returns a float32 view of the tensor's heap memory.
   *
   * Any allocation can grow the wasm memory and detach earlier views, so take views after the
   * last `allocate` or `run` call that precedes their use.
   */
  view(info: TensorInfo): Float32Array {
    if (info.dtype !== 'float32') throw new Error(`KernelScope.view expects a float32 tensor, got ${info.dtype}`);
    return this.backend.typedArrayFromHeap(info) as Float32Array;
  }

  /** Removes `info` from the intermediates so that it outlives `dispose()`, and returns it. */
  keep(info: TensorInfo): TensorInfo {
    const index = this.temporaries.indexOf(info);
    if (index >= 0) this.temporaries.splice(index, 1);
    return info;
  }

  /** Frees every intermediate that was not kept. */
  dispose(): void {
    for (const info of this.temporaries) this.backend.disposeData(info.dataId);
    this.temporaries.length = 0;
  }
}

/**
 * Copies rows `[firstRow, endRow)` of a float32 tensor seen as `[rows, rowLength]` into a new tracked
 * tensor of shape `shape`. Returns an alias instead of a copy when the range covers every row.
 */
export function copyRows(
  scope: KernelScope,
  info: TensorInfo,
  rowLength: number,
  firstRow: number,
  endRow: number,
  shape: number[],
): TensorInfo {
  const rows = util.sizeFromShape(info.shape) / rowLength;
  if (firstRow === 0 && endRow === rows) return scope.reshape(info, shape);
  const output = scope.allocate(shape);
  const source = scope.view(info);
  scope.view(output).set(source.subarray(firstRow * rowLength, endRow * rowLength));
  return output;
}
