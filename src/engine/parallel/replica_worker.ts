/**
 * Worker-thread side of data-parallel training: one replica of the model with its own tfjs
 * backend and optimizer. The main thread sends one request at a time (see protocol.ts) and
 * the worker sends one reply to each.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { parentPort, workerData } from 'node:worker_threads';

import { initBackend } from '../../backends/index.ts';
import type { Detector } from '../../models/types.ts';
import { setBatchNormSyncGroup } from '../../nn/sync_batch_norm.ts';
import { DETECTORS } from '../../registry/index.ts';
import '../../register_all.ts';
import { RladetError } from '../../utils/errors.ts';
import { setLogLevel, type LogLevel } from '../../utils/logger.ts';
import { threadCpuSeconds } from './thread_cpu.ts';
import { buildOptimizer, type Optimizer } from '../optimizer.ts';
import { applyGradients, computeGradients } from '../train_step.ts';
import {
  acquireWrites,
  averageSlots,
  checkSameLayout,
  chunkOf,
  layoutParameters,
  publishWrites,
  type ParameterLayout,
} from './gradient_buffer.ts';
import { listSyncBatchNorms, SharedMemorySyncGroup } from './sync_batch_norm_group.ts';
import { toTensorRecords, transferListOf, type ReplicaReply, type ReplicaRequest, type ReplicaWorkerData, type Shard, type TensorRecord } from './protocol.ts';

class Replica {
  private readonly layout: ParameterLayout;
  private readonly gradients: Float32Array;
  private readonly present: Uint8Array;
  private readonly control: Int32Array;
  /** The SyncBN exchange with the other replicas, when the model has SyncBN layers. */
  private readonly syncGroup: SharedMemorySyncGroup | undefined;
  /** Thread CPU time at the start of the current step's 'compute'. */
  private stepCpuStart: number | undefined;

  constructor(
    private readonly data: ReplicaWorkerData,
    private readonly model: Detector,
    private readonly optimizer: Optimizer,
  ) {
    const owner = `training worker ${data.index}`;
    const own = model.trainableParameters().map(([name, variable]) => ({ name, shape: [...variable.shape] }));
    checkSameLayout(data.parameters, own, owner);
    this.layout = layoutParameters(own);
    this.gradients = new Float32Array(data.buffers.gradients);
    this.present = new Uint8Array(data.buffers.present);
    this.control = new Int32Array(data.buffers.control);
    if (data.syncBatchNorm === undefined && data.workers > 1 && listSyncBatchNorms(model).length > 0) {
      throw new RladetError(
        `${owner}: the model has SyncBN layers but the main thread's model has none, so the worker must build the same model (same config and the same imported modules)`,
      );
    }
    this.syncGroup = data.syncBatchNorm === undefined ? undefined : new SharedMemorySyncGroup(model, data.index, data.workers, data.syncBatchNorm);
    model.train();
  }

  handle(request: ReplicaRequest): Promise<{ reply: ReplicaReply; transfer?: ArrayBuffer[] }> | { reply: ReplicaReply; transfer?: ArrayBuffer[] } {
    switch (request.kind) {
      case 'setState':
        this.setState(request.model, request.optimizer);
        return { reply: { kind: 'done' } };
      case 'getState':
        return this.getState();
      case 'compute':
        this.stepCpuStart = threadCpuSeconds();
        // Every worker counts the step, also one without a shard, so that the SyncBN tickets agree.
        this.syncGroup?.beginStep(request.active);
        return { reply: { kind: 'computed', losses: request.shard === undefined ? {} : this.compute(request.shard) } };
      case 'reduce':
        this.reduce(request.active);
        return { reply: { kind: 'done' } };
      case 'apply': {
        const gradNorm = this.apply(request.active, request.lr, request.gradClipMaxNorm);
        const reply: ReplicaReply = { kind: 'applied', numTensors: tf.memory().numTensors };
        if (gradNorm !== undefined) reply.gradNorm = gradNorm;
        const cpuEnd = threadCpuSeconds();
        if (cpuEnd !== undefined && this.stepCpuStart !== undefined) reply.stepCpuSeconds = cpuEnd - this.stepCpuStart;
        return { reply };
      }
    }
  }

  /** Computes the shard's losses and writes its gradients (zeros where there is none) into this worker's slot. */
  private compute(shard: Shard): Record<string, number> {
    const images = tf.tensor4d(shard.pixels, shard.shape, 'float32');
    let result;
    const previousGroup = setBatchNormSyncGroup(this.syncGroup);
    try {
      result = computeGradients(this.model, { images, metas: shard.metas, targets: shard.targets });
    } finally {
      setBatchNormSyncGroup(previousGroup);
      images.dispose();
    }
    if (this.data.index === 0 && this.syncGroup?.hasIdleWorkers === true) this.syncGroup.shareRunningStats();

    const { losses, grads } = result;
    const { parameters, offsets, sizes, size } = this.layout;
    const slot = this.gradients.subarray(this.data.index * size, (this.data.index + 1) * size);
    const presentBase = this.data.index * parameters.length;
    try {
      parameters.forEach(({ name }, p) => {
        const grad = grads.get(name);
        this.present[presentBase + p] = grad === undefined ? 0 : 1;
        if (grad === undefined) slot.fill(0, offsets[p]!, offsets[p]! + sizes[p]!);
        else slot.set(this.valuesOf(grad), offsets[p]!);
      });
    } finally {
      tf.dispose([...grads.values()]);
    }
    publishWrites(this.control);
    return losses;
  }

  /**
   * Returns the tensor's values without copying them. The cpu backend's dataSync returns its own
   * storage, but the wasm backend's copies the heap, so wasm gets a view of the heap instead.
   * The view is valid until the next tensor allocation.
   */
  private valuesOf(tensor: tf.Tensor): Float32Array {
    if (this.data.backend === 'wasm') return (tf.backend() as unknown as BackendWasm).typedArrayFromHeap(tensor) as Float32Array;
    return tensor.dataSync() as Float32Array;
  }

  private reduce(active: number): void {
    acquireWrites(this.control);
    const { start, end } = chunkOf(this.layout.size, this.data.index, this.data.workers);
    averageSlots(this.gradients, this.layout.size, active, start, end);
    publishWrites(this.control);
  }

  /**
   * Applies the averaged gradient in slot 0. A parameter is updated when at least one active
   * worker produced a gradient for it. Workers without one count as zeros in the mean.
   */
  private apply(active: number, lr: number, gradClipMaxNorm: number | undefined): number | undefined {
    acquireWrites(this.control);
    if (this.data.index >= active) this.syncGroup?.loadSharedRunningStats();
    const { parameters, offsets, sizes } = this.layout;
    const grads = new Map<string, tf.Tensor>();
    try {
      parameters.forEach(({ name, shape }, p) => {
        let used = false;
        for (let worker = 0; worker < active; worker++) used ||= this.present[worker * parameters.length + p] === 1;
        if (!used) return;
        const mean = this.gradients.subarray(offsets[p]!, offsets[p]! + sizes[p]!);
        // The cpu backend keeps the given array as the tensor's storage, and the optimizer may keep
        // that storage as SGD's first momentum buffer. So cpu gets a copy. The wasm backend copies anyway.
        grads.set(name, tf.tensor(this.data.backend === 'cpu' ? mean.slice() : mean, shape, 'float32'));
      });
      return applyGradients(this.model, grads, this.optimizer, lr, gradClipMaxNorm);
    } finally {
      tf.dispose([...grads.values()]);
    }
  }

  private setState(model: TensorRecord[], optimizer: { tensors: TensorRecord[]; record: Record<string, number> }): void {
    const state = this.model.stateDict();
    const received = new Map(model.map((record) => [record.name, record]));
    for (const [name, variable] of state) {
      const record = received.get(name);
      if (record === undefined) throw new RladetError(`training worker ${this.data.index}: the state sent by the main thread has no '${name}'`);
      if (record.shape.join(',') !== variable.shape.join(',')) {
        throw new RladetError(
          `training worker ${this.data.index}: '${name}' has shape [${record.shape.join(', ')}] in the sent state but [${variable.shape.join(', ')}] in the replica`,
        );
      }
    }
    for (const [name, variable] of state) {
      const record = received.get(name)!;
      tf.tidy(() => variable.assign(tf.tensor(record.data, record.shape, 'float32')));
    }
    const tensors = new Map(optimizer.tensors.map((record) => [record.name, tf.tensor(record.data, record.shape, 'float32')]));
    try {
      this.optimizer.loadState(tensors, optimizer.record);
    } finally {
      tf.dispose([...tensors.values()]);
    }
  }

  private async getState(): Promise<{ reply: ReplicaReply; transfer: ArrayBuffer[] }> {
    const model = await toTensorRecords(this.model.stateDict());
    const tensors = await toTensorRecords(this.optimizer.stateTensors());
    return {
      reply: { kind: 'state', model, optimizer: { tensors, record: this.optimizer.stateRecord() } },
      transfer: [...transferListOf(model), ...transferListOf(tensors)],
    };
  }
}

function errorReply(error: unknown): ReplicaReply {
  const { name, message, stack } = error instanceof Error ? error : new Error(String(error));
  return { kind: 'error', error: { name, message, ...(stack === undefined ? {} : { stack }) } };
}

async function startReplica(data: ReplicaWorkerData): Promise<Replica> {
  setLogLevel(data.logLevel as LogLevel);
  for (const specifier of data.imports) await import(specifier);
  const backend = await initBackend(data.backend);
  if (backend.name !== data.backend) {
    throw new RladetError(`training worker ${data.index}: expected the '${data.backend}' backend, got '${backend.name}'`);
  }
  const model = DETECTORS.build(data.model, 'model') as Detector;
  return new Replica(data, model, buildOptimizer(data.optimizer));
}

if (parentPort !== null) {
  const port = parentPort;
  let replica: Replica | undefined;
  try {
    replica = await startReplica(workerData as ReplicaWorkerData);
    port.postMessage({ kind: 'ready' } satisfies ReplicaReply);
  } catch (error) {
    port.postMessage(errorReply(error));
  }

  port.on('message', (request: ReplicaRequest) => {
    if (replica === undefined) return;
    const current = replica;
    Promise.resolve()
      .then(() => current.handle(request))
      .then(
        ({ reply, transfer }) => port.postMessage(reply, transfer ?? []),
        (error: unknown) => port.postMessage(errorReply(error)),
      );
  });
}
