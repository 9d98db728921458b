/**
 * Data-parallel training on CPU cores, with the semantics of PyTorch's DistributedDataParallel.
 *
 * N worker threads each hold a replica of the model, an optimizer and their own tfjs backend
 * (wasm or cpu, which run single-threaded under Node). Each step:
 *   1. the main thread splits the batch into N shards of whole images (every shard keeps the
 *      batch's padded size) and transfers each shard's pixels to its worker;
 *   2. each worker computes the losses of its shard, normalised within the shard as a
 *      single-process step would normalise them, and writes the gradients into its slot of a
 *      shared buffer;
 *   3. the main thread checks that the losses of every worker are finite;
 *   4. the workers average the slots, each one a chunk of the elements, in a fixed order;
 *   5. every worker clips the averaged gradient (when configured) and applies the same
 *      optimizer update, so the replicas stay identical.
 * The averaged gradient is the mean of the per-worker gradients of per-worker-normalised
 * losses, as DDP averages the gradients of its ranks. It differs from the gradient of one
 * process on the whole batch wherever a loss is normalised by a batch-wide count (such as the
 * number of positive anchors). A batch with fewer images than workers leaves the last workers
 * idle, and the mean runs over the workers with images. A parameter that has no gradient on a
 * worker counts as zero there, and a parameter without a gradient on any worker is not updated.
 *
 * Each replica keeps its own batch-norm running statistics, updated from its shard. Like DDP
 * with broadcast_buffers, the state copied back to the main thread (for checkpoints and
 * evaluation) comes from replica 0. Frozen or normEval batch norm does not change them.
 * SyncBN layers (SyncBatchNorm2d) instead normalise with statistics over the images of every
 * worker with images, exchanged through shared memory (sync_batch_norm_group.ts), so their
 * running statistics stay identical in every replica.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Worker } from 'node:worker_threads';

import type { Detector } from '../../models/types.ts';
import { RladetError } from '../../utils/errors.ts';
import { getLogLevel } from '../../utils/logger.ts';
import type { Optimizer } from '../optimizer.ts';
import { checkLossesFinite, type Batch, type StepResult } from '../train_step.ts';
import { allocateGradientBuffers, layoutParameters } from './gradient_buffer.ts';
import { allocateSyncBatchNormBuffers, listSyncBatchNorms, type SyncBatchNormSetup } from './sync_batch_norm_group.ts';
import {
  toTensorRecords,
  type ReplicaReply,
  type ReplicaRequest,
  type ReplicaWorkerData,
  type Shard,
  type TensorRecord,
} from './protocol.ts';

export interface ParallelTrainerOptions {
  /** Number of replicas (worker threads), at least 1. */
  workers: number;
  /** Backend of every replica, which should be the main thread's backend. */
  backend: 'wasm' | 'cpu';
  /** Config of the model that each worker builds. It must give the main thread's architecture. */
  model: { type: string };
  /** Config of the optimizer, built in each worker. */
  optimizer: { type: string };
  /** Modules every worker imports before building the model, such as ones that register custom components. */
  imports?: string[];
  /**
   * Maximum time in seconds that a worker waits at a SyncBN layer for the other workers before
   * training fails with an error naming the layer and the missing workers. Default 60.
   */
  syncBatchNormTimeoutSeconds?: number;
}

export interface ParallelStepResult extends StepResult {
  /** `tf.memory().numTensors` of each worker after the step. */
  workerTensors: number[];
  /** Images each worker trained on in this step. */
  shardSizes: number[];
  /** CPU seconds each worker thread spent on this step, where the OS reports it (Linux). */
  workerCpuSeconds?: number[];
  /** Wall-clock seconds of each phase, measured on the main thread. */
  phaseSeconds: { split: number; compute: number; reduce: number; apply: number };
}

interface PendingRequest {
  resolve: (reply: ReplicaReply) => void;
  reject: (error: Error) => void;
  /** Task the worker is running, for error messages ("computing gradients at iteration 5"). */
  task: string;
}

interface ReplicaHandle {
  index: number;
  worker: Worker;
  pending?: PendingRequest;
}

type ModelState = { model: TensorRecord[]; optimizer: { tensors: TensorRecord[]; record: Record<string, number> } };

const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'];

/** Replica workers of every trainer in this process that have not exited yet. */
const liveWorkers = new Set<Worker>();

/** Returns the number of replica worker threads that are still running, across all trainers. */
export function countLiveWorkers(): number {
  return liveWorkers.size;
}

/**
 * Splits a batch into shards of whole images: at most `workers`, sizes differing by at most one.
 * NOTE: every shard keeps the batch's padded height and width, while MMDetection collates each
 * GPU's images on their own, so a shard may carry more padding than it would there.
 */
export function splitBatch(batch: Batch, workers: number): Shard[] {
  const [count, height, width, channels] = batch.images.shape;
  const active = Math.min(count, workers);
  const imageSize = height * width * channels;
  const pixels = batch.images.dataSync() as Float32Array;
  const shards: Shard[] = [];
  let start = 0;
  for (let i = 0; i < active; i++) {
    const size = Math.floor(count / active) + (i < count % active ? 1 : 0);
    const end = start + size;
    shards.push({
      // slice() copies, so the shard owns its buffer and can transfer it.
      pixels: pixels.slice(start * imageSize, end * imageSize),
      shape: [size, height, width, channels],
      metas: batch.metas.slice(start, end),
      targets: batch.targets.slice(start, end),
    });
    start = end;
  }
  return shards;
}

/** Mean of each loss term over the workers, summed in worker order. */
function meanLosses(perWorker: readonly Record<string, number>[]): Record<string, number> {
  const mean: Record<string, number> = {};
  for (const name of Object.keys(perWorker[0]!)) {
    let sum = 0;
    for (const losses of perWorker) sum += losses[name] ?? NaN;
    mean[name] = sum / perWorker.length;
  }
  return mean;
}

/** Allocates the shared memory of the model's SyncBN layers, when it has some and there is more than one worker. */
function prepareSyncBatchNorm(model: Detector, options: ParallelTrainerOptions): SyncBatchNormSetup | undefined {
  const timeoutSeconds = options.syncBatchNormTimeoutSeconds ?? 60;
  if (!(timeoutSeconds > 0)) {
    throw new RangeError(`ParallelTrainer: syncBatchNormTimeoutSeconds must be positive, got ${timeoutSeconds}`);
  }
  const layers = listSyncBatchNorms(model);
  if (layers.length === 0 || options.workers === 1) return undefined;
  return { layers, buffers: allocateSyncBatchNormBuffers(layers, options.workers), timeoutSeconds };
}

/** Replicas of a model in worker threads that train it data-parallel, as the file comment describes. */
export class ParallelTrainer {
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;

  private constructor(private readonly replicas: ReplicaHandle[]) {
    for (const replica of replicas) this.listen(replica);
  }

  /**
   * Starts the workers, waits until each has built its replica, then copies the parameters and
   * buffers of `model` (and the state of `optimizer`, when given) into every replica.
   */
  static async start(model: Detector, optimizer: Optimizer | undefined, options: ParallelTrainerOptions): Promise<ParallelTrainer> {
    if (!Number.isInteger(options.workers) || options.workers < 1) {
      throw new RangeError(`ParallelTrainer: workers must be a positive integer, got ${options.workers}`);
    }
    const parameters = model.trainableParameters().map(([name, variable]) => ({ name, shape: [...variable.shape] }));
    const buffers = allocateGradientBuffers(layoutParameters(parameters), options.workers);
    const syncBatchNorm = prepareSyncBatchNorm(model, options);
    const level = getLogLevel();
    const logLevel = LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf('warn') ? 'warn' : level;

    const replicas: ReplicaHandle[] = [];
    for (let index = 0; index < options.workers; index++) {
      const workerData: ReplicaWorkerData = {
        index,
        workers: options.workers,
        backend: options.backend,
        model: options.model as ReplicaWorkerData['model'],
        optimizer: options.optimizer as ReplicaWorkerData['optimizer'],
        imports: [...(options.imports ?? [])],
        parameters,
        buffers,
        ...(syncBatchNorm === undefined ? {} : { syncBatchNorm }),
        logLevel,
      };
      const worker = new Worker(new URL('./replica_worker_entry.mjs', import.meta.url), { workerData });
      liveWorkers.add(worker);
      worker.once('exit', () => liveWorkers.delete(worker));
      replicas.push({ index, worker });
    }
    const trainer = new ParallelTrainer(replicas);
    try {
      await Promise.all(replicas.map((replica) => trainer.expectReply(replica, 'starting', 'ready')));
      await trainer.broadcastState(model, optimizer);
    } catch (error) {
      await trainer.close();
      throw error;
    }
    return trainer;
  }

  get workers(): number {
    return this.replicas.length;
  }

  /** Copies the parameters and buffers of `model`, and the optimizer's state when given, into every replica. */
  async broadcastState(model: Detector, optimizer?: Optimizer): Promise<void> {
    const state: ModelState = {
      model: await toTensorRecords(model.stateDict()),
      optimizer: {
        tensors: optimizer === undefined ? [] : await toTensorRecords(optimizer.stateTensors()),
        record: optimizer?.stateRecord() ?? {},
      },
    };
    // postMessage copies the records for each worker.
    await this.requestAll(() => ({ kind: 'setState', ...state }), 'loading the model state', 'done');
  }

  /**
   * Copies replica 0's parameters and buffers into `model`, and its optimizer state into
   * `optimizer` when given, for checkpoints and evaluation on the main thread.
   */
  async copyStateTo(model: Detector, optimizer?: Optimizer): Promise<void> {
    const reply = await this.request(this.replicas[0]!, { kind: 'getState' }, 'sending its state', 'state');
    const received = new Map(reply.model.map((record) => [record.name, record]));
    for (const [name, variable] of model.stateDict()) {
      const record = received.get(name);
      if (record === undefined || record.shape.join(',') !== variable.shape.join(',')) {
        throw new RladetError(`training worker 0 sent no '${name}' of shape [${variable.shape.join(', ')}], so the replica does not match the main model`);
      }
      tf.tidy(() => variable.assign(tf.tensor(record.data, record.shape, 'float32')));
    }
    if (optimizer === undefined) return;
    const tensors = new Map(reply.optimizer.tensors.map((record) => [record.name, tf.tensor(record.data, record.shape, 'float32')]));
    try {
      optimizer.loadState(tensors, reply.optimizer.record);
    } finally {
      tf.dispose([...tensors.values()]);
    }
  }

  /** Parameters and buffers of every replica, by name, for checking that they are identical. */
  async replicaStates(): Promise<Array<Map<string, Float32Array>>> {
    const replies = await this.requestAll(() => ({ kind: 'getState' }), 'sending its state', 'state');
    return replies.map((reply) => new Map(reply.model.map((record) => [record.name, record.data])));
  }

  /**
   * Runs one data-parallel step on `batch` (see the file comment). `batch.images` stays with
   * the caller. Throws NonFiniteLossError, naming the worker, when a loss is NaN or infinite,
   * and then no replica is updated. The losses returned are the means over the workers with images.
   */
  async step(batch: Batch, lr: number, iteration: number, gradClipMaxNorm?: number): Promise<ParallelStepResult> {
    const started = performance.now();
    const shards = splitBatch(batch, this.replicas.length);
    const active = shards.length;
    const split = performance.now();
    const computed = await this.requestAll(
      (index) => ({ kind: 'compute', iteration, active, ...(index < active ? { shard: shards[index]! } : {}) }),
      `computing gradients at iteration ${iteration}`,
      'computed',
      (index) => (index < active ? [shards[index]!.pixels.buffer as ArrayBuffer] : []),
    );
    const perWorker = computed.slice(0, active).map((reply) => reply.losses);
    perWorker.forEach((losses, index) => checkLossesFinite(losses, iteration, `in worker ${index}`));
    const compute = performance.now();

    await this.requestAll(() => ({ kind: 'reduce', active }), `averaging gradients at iteration ${iteration}`, 'done');
    const reduce = performance.now();
    const applied = await this.requestAll(
      () => ({ kind: 'apply', active, lr, ...(gradClipMaxNorm === undefined ? {} : { gradClipMaxNorm }) }),
      `applying the update at iteration ${iteration}`,
      'applied',
    );
    const apply = performance.now();
    const result: ParallelStepResult = {
      losses: meanLosses(perWorker),
      workerTensors: applied.map((reply) => reply.numTensors),
      shardSizes: this.replicas.map((_, index) => (index < active ? shards[index]!.shape[0] : 0)),
      phaseSeconds: {
        split: (split - started) / 1000,
        compute: (compute - split) / 1000,
        reduce: (reduce - compute) / 1000,
        apply: (apply - reduce) / 1000,
      },
    };
    if (applied[0]!.gradNorm !== undefined) result.gradNorm = applied[0]!.gradNorm;
    const cpuSeconds = applied.map((reply) => reply.stepCpuSeconds);
    if (cpuSeconds.every((seconds) => seconds !== undefined)) result.workerCpuSeconds = cpuSeconds;
    return result;
  }

  /** Stops every worker and waits until they have exited. Requests still in flight are rejected. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.failure ??= new RladetError('the data-parallel trainer is closed');
      for (const replica of this.replicas) this.rejectPending(replica, this.failure);
      await Promise.all(this.replicas.map((replica) => replica.worker.terminate()));
    })();
    return this.closing;
  }

  private requestAll<K extends ReplicaReply['kind']>(
    message: (index: number) => ReplicaRequest,
    task: string,
    expected: K,
    transfer: (index: number) => ArrayBuffer[] = () => [],
  ): Promise<Array<Extract<ReplicaReply, { kind: K }>>> {
    return Promise.all(this.replicas.map((replica) => this.request(replica, message(replica.index), task, expected, transfer(replica.index))));
  }

  private request<K extends ReplicaReply['kind']>(
    replica: ReplicaHandle,
    message: ReplicaRequest,
    task: string,
    expected: K,
    transfer: ArrayBuffer[] = [],
  ): Promise<Extract<ReplicaReply, { kind: K }>> {
    const reply = this.expectReply(replica, task, expected);
    if (this.failure === undefined) replica.worker.postMessage(message, transfer);
    return reply;
  }

  /**
   * Waits for the next reply of `replica`, which must be of kind `expected`.
   * NOTE: there is no timeout, so a worker that never replies (an endless loop) stalls training.
   */
  private expectReply<K extends ReplicaReply['kind']>(replica: ReplicaHandle, task: string, expected: K): Promise<Extract<ReplicaReply, { kind: K }>> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (replica.pending !== undefined) {
      return Promise.reject(new RladetError(`training worker ${replica.index} is still ${replica.pending.task}, and requests must not overlap`));
    }
    return new Promise((resolve, reject) => {
      replica.pending = {
        resolve: (reply) => {
          if (reply.kind === expected) resolve(reply as Extract<ReplicaReply, { kind: K }>);
          else this.fail(new RladetError(`training worker ${replica.index} replied '${reply.kind}' while ${task}, expected '${expected}'`));
        },
        reject,
        task,
      };
      // A worker with a request in flight keeps the process alive; an idle one does not.
      replica.worker.ref();
    });
  }

  private listen(replica: ReplicaHandle): void {
    const { worker, index } = replica;
    worker.on('message', (reply: ReplicaReply) => {
      const pending = replica.pending;
      if (pending === undefined) return;
      replica.pending = undefined;
      worker.unref();
      if (reply.kind !== 'error') {
        pending.resolve(reply);
        return;
      }
      const cause = new Error(reply.error.message);
      cause.name = reply.error.name;
      if (reply.error.stack !== undefined) cause.stack = reply.error.stack;
      this.fail(new RladetError(`training worker ${index} failed while ${pending.task}: ${reply.error.name}: ${reply.error.message}`, { cause }));
    });
    worker.on('error', (error) => {
      const task = replica.pending?.task ?? 'idle';
      this.fail(new RladetError(`training worker ${index} crashed while ${task}: ${error.name}: ${error.message}`, { cause: error }));
    });
    worker.on('exit', (code) => {
      if (this.closing !== undefined) return;
      const task = replica.pending?.task ?? 'idle';
      this.fail(new RladetError(`training worker ${index} exited with code ${code} while ${task}`));
    });
  }

  /** Rejects every request in flight with `error`, then stops all workers. */
  private fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    for (const replica of this.replicas) this.rejectPending(replica, error);
    void this.close();
  }

  private rejectPending(replica: ReplicaHandle, error: Error): void {
    const pending = replica.pending;
    replica.pending = undefined;
    replica.worker.unref();
    pending?.reject(error);
  }
}
