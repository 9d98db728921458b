import * as tf from '@tensorflow/tfjs-core';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { decodeSafetensors, encodeSafetensors, toFloat32Array, type SafetensorsTensor } from '../io/safetensors.ts';
import type { Module } from '../nn/module.ts';
import { CheckpointError } from '../utils/errors.ts';
import { writeFileAtomic } from '../utils/fs.ts';
import type { Optimizer } from './optimizer.ts';

/**
 * rladet checkpoints are safetensors files: model tensors under `model.<name>`, optimizer state
 * tensors under `optimizer.<state name>` (e.g. `optimizer.momentum_buffer.<name>`), and
 * everything else (epoch, iteration, config, metrics, optimizer step counts) as JSON in the
 * `rladet` entry of the safetensors `__metadata__`. Files are
 * written to a temporary name and renamed, so a crash never leaves a half-written checkpoint.
 */

export const CHECKPOINT_FORMAT = 'rladet-checkpoint-v1';
const MODEL_PREFIX = 'model.';
const OPTIMIZER_PREFIX = 'optimizer.';

export interface CheckpointMeta {
  /** Number of finished epochs. */
  epoch: number;
  /** Number of finished iterations. */
  iteration: number;
  config?: unknown;
  metrics?: Record<string, number>;
  /** The optimizer's non-tensor state (step counts). */
  optimizerState?: Record<string, number>;
  /** The checkpoint that tools/convert_checkpoint.ts converted these weights from. */
  convertedFrom?: string;
}

async function tensorsOf(prefix: string, variables: Iterable<[string, tf.Tensor]>, into: Map<string, SafetensorsTensor>): Promise<void> {
  for (const [name, tensor] of variables) {
    into.set(prefix + name, { dtype: 'F32', shape: [...tensor.shape], data: (await tensor.data()) as Float32Array });
  }
}

export async function saveCheckpoint(path: string, model: Module, optimizer: Optimizer | undefined, meta: CheckpointMeta): Promise<void> {
  const tensors = new Map<string, SafetensorsTensor>();
  await tensorsOf(MODEL_PREFIX, model.stateDict(), tensors);
  const record: CheckpointMeta = { ...meta };
  if (optimizer !== undefined) {
    await tensorsOf(OPTIMIZER_PREFIX, optimizer.stateTensors(), tensors);
    record.optimizerState = optimizer.stateRecord();
  }
  const bytes = encodeSafetensors(tensors, { format: CHECKPOINT_FORMAT, rladet: JSON.stringify(record) });
  await writeFileAtomic(path, bytes);
}

/**
 * Writes model tensors that are already in rladet's layout as a checkpoint without optimizer
 * state; tools/convert_checkpoint.ts uses it when no model is built.
 */
export async function saveModelTensors(path: string, tensors: Map<string, SafetensorsTensor>, meta: CheckpointMeta): Promise<void> {
  const prefixed = new Map([...tensors].map(([name, tensor]) => [MODEL_PREFIX + name, tensor]));
  await writeFileAtomic(path, encodeSafetensors(prefixed, { format: CHECKPOINT_FORMAT, rladet: JSON.stringify(meta) }));
}

/** Reads a checkpoint file and checks that it is an rladet checkpoint. */
export async function readCheckpoint(path: string): Promise<{ tensors: Map<string, SafetensorsTensor>; meta: CheckpointMeta }> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new CheckpointError(`checkpoint ${path} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  const { tensors, metadata } = decodeSafetensors(bytes, path);
  if (metadata['format'] !== CHECKPOINT_FORMAT || metadata['rladet'] === undefined) {
    throw new CheckpointError(`${path} is a safetensors file but not an rladet checkpoint (metadata 'format' is ${JSON.stringify(metadata['format'])})`);
  }
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(metadata['rladet']) as CheckpointMeta;
  } catch (error) {
    throw new CheckpointError(`${path}: metadata 'rladet' is not valid JSON: ${(error as Error).message}`);
  }
  return { tensors, meta };
}

/**
 * Copies the checkpoint's model tensors into `model` (every parameter and buffer must be
 * present with the same shape) and, when given, restores the optimizer's state. With an
 * optimizer (resuming), a checkpoint that contains weights only is rejected.
 */
export async function loadCheckpoint(path: string, model: Module, optimizer?: Optimizer): Promise<CheckpointMeta> {
  const { tensors, meta } = await readCheckpoint(path);
  if (optimizer !== undefined && (meta.convertedFrom !== undefined || meta.iteration === 0)) {
    const source = meta.convertedFrom === undefined ? '' : ` (converted from ${meta.convertedFrom})`;
    throw new CheckpointError(
      `${path} contains weights only${source}, with no epoch, iteration or optimizer state, so training cannot ` +
        `resume from it. Start from its weights with --load-from ${path}`,
    );
  }
  const state = model.stateDict();
  const missing = [...state.keys()].filter((name) => !tensors.has(MODEL_PREFIX + name));
  if (missing.length > 0) {
    const listed = missing.slice(0, 5).join(', ') + (missing.length > 5 ? `, ... (${missing.length} in all)` : '');
    throw new CheckpointError(`${path}: missing model tensors ${listed}; was it saved from a different config?`);
  }
  for (const [name, variable] of state) {
    const stored = tensors.get(MODEL_PREFIX + name)!;
    if (stored.shape.join(',') !== variable.shape.join(',')) {
      throw new CheckpointError(`${path}: '${name}' has shape [${stored.shape.join(', ')}] in the checkpoint but [${variable.shape.join(', ')}] in the model`);
    }
  }
  for (const [name, variable] of state) {
    const stored = tensors.get(MODEL_PREFIX + name)!;
    tf.tidy(() => variable.assign(tf.tensor(toFloat32Array(stored), stored.shape, 'float32')));
  }
  if (optimizer !== undefined) {
    const state = new Map<string, tf.Tensor>();
    for (const [key, stored] of tensors) {
      if (!key.startsWith(OPTIMIZER_PREFIX)) continue;
      state.set(key.slice(OPTIMIZER_PREFIX.length), tf.tensor(toFloat32Array(stored), stored.shape, 'float32'));
    }
    try {
      optimizer.loadState(state, meta.optimizerState ?? {});
    } catch (error) {
      throw new CheckpointError(`${path}: optimizer state does not fit the configured optimizer: ${(error as Error).message}`, { cause: error });
    } finally {
      tf.dispose([...state.values()]);
    }
  }
  return meta;
}

/** Returns the checkpoint of the highest epoch in a work dir (`epoch_<N>.safetensors`), or undefined. */
export function findLatestCheckpoint(workDir: string): string | undefined {
  let best: { epoch: number; name: string } | undefined;
  let names: string[];
  try {
    names = readdirSync(workDir);
  } catch {
    return undefined;
  }
  for (const name of names) {
    const match = /^epoch_(\d+)\.safetensors$/.exec(name);
    if (match === null) continue;
    const epoch = Number(match[1]);
    if (best === undefined || epoch > best.epoch) best = { epoch, name };
  }
  return best === undefined ? undefined : join(workDir, best.name);
}
