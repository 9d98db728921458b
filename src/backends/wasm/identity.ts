import type { IdentityInputs, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/**
 * Builds the Identity kernel for wasm. The kernel of tfjs-backend-wasm 4.22 copies its input,
 * and the engine runs Identity on every tensor that a recorded op saves for its gradient
 * (over a thousand copies per quick-start training step). This one returns the input's data
 * with its reference count raised, as the cpu backend's Identity and every backend's Reshape
 * do. That is safe because no wasm kernel writes into its inputs. String tensors go to
 * `fallback`, the original kernel function.
 */
export function makeIdentity(fallback: KernelFunc): KernelFunc {
  return ((args: { inputs: IdentityInputs; backend: BackendWasm }) => {
    const x = args.inputs.x as TensorInfo;
    if (x.dtype === 'string') return fallback(args as unknown as Parameters<KernelFunc>[0]);
    args.backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  }) as unknown as KernelFunc;
}
