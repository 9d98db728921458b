import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import { RladetError } from '../utils/errors.ts';
import { getLogger } from '../utils/logger.ts';
import { registerCpuKernelFixes } from './cpu_kernels.ts';

const logger = getLogger('backend');

import { BACKEND_CHOICES, type BackendChoice } from './choices.ts';

export { BACKEND_CHOICES, type BackendChoice } from './choices.ts';

export interface BackendSelection {
  /** The tfjs backend name now active: 'tensorflow', 'wasm' or 'cpu'. */
  name: string;
  /** Which package provides it (for 'tensorflow': tfjs-node-gpu or tfjs-node). */
  provider: string;
  /** Why each earlier candidate was skipped (for `auto`). */
  skipped: Array<{ candidate: string; reason: string }>;
}

/** Packages that register the native 'tensorflow' backend, in the order `auto` tries them. */
const NODE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

function describeImportError(pkg: string, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  if (code === 'ERR_MODULE_NOT_FOUND' && message.includes(`'${pkg}'`)) {
    return `${pkg} is not installed`;
  }
  if (message.includes('tfjs_binding.node') || message.includes('libtensorflow')) {
    return `${pkg} is installed but its native binding is missing (its install script downloads libtensorflow; run 'npm rebuild ${pkg}' with network access)`;
  }
  return `${pkg} failed to load: ${message.split('\n')[0]}`;
}

async function tryTensorflow(skipped: BackendSelection['skipped']): Promise<string | undefined> {
  for (const pkg of NODE_PACKAGES) {
    try {
      await import(pkg);
    } catch (error) {
      skipped.push({ candidate: pkg, reason: describeImportError(pkg, error) });
      continue;
    }
    if (tf.findBackend('tensorflow') === null && tf.findBackendFactory('tensorflow') === null) {
      skipped.push({
        candidate: pkg,
        reason: `${pkg} loaded but registered no 'tensorflow' backend with this copy of @tensorflow/tfjs-core (version mismatch? rladet uses ${tf.version_core})`,
      });
      continue;
    }
    if (await tf.setBackend('tensorflow')) return pkg;
    skipped.push({ candidate: pkg, reason: `${pkg} loaded but tf.setBackend('tensorflow') failed` });
  }
  return undefined;
}

async function setWasm(): Promise<boolean> {
  const { registerWasmTrainingKernels } = await import('./wasm_kernels.ts');
  registerWasmTrainingKernels();
  return tf.setBackend('wasm');
}

/**
 * Activates a tfjs backend. `auto` tries tfjs-node-gpu, then tfjs-node, then wasm, and logs
 * which one it chose and why it skipped the others. An explicit choice that cannot be met
 * throws with the reason.
 */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<BackendSelection> {
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new RladetError(`--backend: '${String(choice)}' is not one of ${BACKEND_CHOICES.join(', ')}`);
  }
  registerCpuKernelFixes();
  const skipped: BackendSelection['skipped'] = [];
  let selection: BackendSelection | undefined;

  if (choice === 'tensorflow' || choice === 'auto') {
    const provider = await tryTensorflow(skipped);
    if (provider !== undefined) selection = { name: 'tensorflow', provider, skipped };
    else if (choice === 'tensorflow') {
      throw new RladetError(
        `--backend tensorflow: not available. ${skipped.map((s) => s.reason).join('; ')}. ` +
          'Install @tensorflow/tfjs-node-gpu (CUDA) or @tensorflow/tfjs-node (CPU) with npm, or use --backend wasm',
      );
    }
  }
  if (selection === undefined && (choice === 'wasm' || choice === 'auto')) {
    if (await setWasm()) selection = { name: 'wasm', provider: '@tensorflow/tfjs-backend-wasm', skipped };
    else if (choice === 'wasm') throw new RladetError('--backend wasm: tf.setBackend("wasm") failed');
    else skipped.push({ candidate: '@tensorflow/tfjs-backend-wasm', reason: 'tf.setBackend("wasm") failed' });
  }
  if (selection === undefined) {
    if (!(await tf.setBackend('cpu'))) throw new RladetError('tf.setBackend("cpu") failed');
    selection = { name: 'cpu', provider: '@tensorflow/tfjs-backend-cpu', skipped };
  }
  await tf.ready();

  for (const { candidate, reason } of skipped) logger.info(`skipped ${candidate}: ${reason}`);
  logger.info(`using backend '${selection.name}' (${selection.provider})`);
  return selection;
}
