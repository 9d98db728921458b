/**
 * Messages between the main thread and the replica workers of data-parallel training. The
 * main thread sends one request at a time to each worker and waits for its reply.
 */
import * as tf from '@tensorflow/tfjs-core';

import type { GroundTruth, ImageMeta } from '../../models/types.ts';
import type { GradientBuffers, ParameterSpec } from './gradient_buffer.ts';
import type { SyncBatchNormSetup } from './sync_batch_norm_group.ts';

/** Everything a worker needs to build its replica, passed as `workerData`. */
export interface ReplicaWorkerData {
  index: number;
  workers: number;
  /** tfjs backend of the replica: 'wasm' or 'cpu', the main thread's choice. */
  backend: 'wasm' | 'cpu';
  model: { type: string } & Record<string, unknown>;
  optimizer: { type: string } & Record<string, unknown>;
  /** Module specifiers (absolute paths or URLs) imported before the model is built, such as modules that register custom components. */
  imports: string[];
  /** The main thread's trainable parameters in order, which the replica must match. */
  parameters: ParameterSpec[];
  buffers: GradientBuffers;
  /** Shared memory of the SyncBN layers; absent when the model has none or there is one worker. */
  syncBatchNorm?: SyncBatchNormSetup;
  /** Log level of the worker's logger (the main thread's level, but at least 'warn'). */
  logLevel: string;
}

/** A tensor as plain data; `data` owns its buffer, so it can be transferred. */
export interface TensorRecord {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** The part of a batch that one worker trains on: whole images, padded as in the batch. */
export interface Shard {
  /** `[n, H, W, 3]` float32 pixels; the buffer is transferred to the worker. */
  pixels: Float32Array;
  shape: [number, number, number, number];
  metas: ImageMeta[];
  targets: GroundTruth[];
}

export type ReplicaRequest =
  | { kind: 'setState'; model: TensorRecord[]; optimizer: { tensors: TensorRecord[]; record: Record<string, number> } }
  | { kind: 'getState' }
  /**
   * Losses and gradients of `shard`, written to the worker's slot. A worker without a shard writes nothing.
   * Workers 0 .. active - 1 have shards.
   */
  | { kind: 'compute'; iteration: number; active: number; shard?: Shard }
  /** Averages the worker's chunk of the first `active` slots into slot 0. */
  | { kind: 'reduce'; active: number }
  /** Applies the averaged gradient of slot 0 (clipped first when `gradClipMaxNorm` is set). */
  | { kind: 'apply'; active: number; lr: number; gradClipMaxNorm?: number };

export type ReplicaReply =
  | { kind: 'ready' }
  | { kind: 'done' }
  | { kind: 'state'; model: TensorRecord[]; optimizer: { tensors: TensorRecord[]; record: Record<string, number> } }
  | { kind: 'computed'; losses: Record<string, number> }
  /** `stepCpuSeconds`: the worker thread's CPU time from the start of 'compute' to the end of 'apply', where the OS reports it. */
  | { kind: 'applied'; gradNorm?: number; numTensors: number; stepCpuSeconds?: number }
  | { kind: 'error'; error: { name: string; message: string; stack?: string } };

/** Copies tensors into records with their own buffers, ready to be transferred. */
export async function toTensorRecords(tensors: Iterable<[string, tf.Tensor]>): Promise<TensorRecord[]> {
  const records: TensorRecord[] = [];
  for (const [name, tensor] of tensors) {
    // The cpu backend returns its own storage from data(), so the copy keeps the tensor intact
    // when the record's buffer is transferred.
    const data = ((await tensor.data()) as Float32Array).slice();
    records.push({ name, shape: [...tensor.shape], data });
  }
  return records;
}

/** Buffers of the records, for the transfer list of postMessage. */
export function transferListOf(records: readonly TensorRecord[]): ArrayBuffer[] {
  return records.map((record) => record.data.buffer as ArrayBuffer);
}
