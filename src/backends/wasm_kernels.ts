/**
 * Training kernels for the wasm backend (placeholder until the kernels land; see the
 * Conv2DBackpropFilter note in README).
 */
export function registerWasmTrainingKernels(): void {
  // TODO: register Conv2DBackpropFilter and a faster Conv2DBackpropInput for wasm.
}
