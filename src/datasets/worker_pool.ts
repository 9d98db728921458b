/**
 * A pool of worker threads that run a data pipeline, so that the JavaScript transforms
 * (resize, flip, normalize, pad) run in parallel with the training step on the main thread.
 */
import { Worker } from 'node:worker_threads';

import type { TransformConfig } from '../config/component_types.ts';
import { ConfigError, DataError, RladetError } from '../utils/errors.ts';
import type { PipelineResult, PipelineTask, PipelineWorkerData } from './pipeline_worker.ts';
import type { Sample } from './sample.ts';

const ERROR_CLASSES: Record<string, new (message: string) => Error> = {
  DataError,
  ConfigError,
  RangeError,
  TypeError,
};

interface PendingTask {
  resolve: (sample: Sample) => void;
  reject: (error: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  pending: Map<number, PendingTask>;
  /** Error that stopped the worker. A stopped worker gets no more tasks. */
  failure?: Error;
}

export class PipelineWorkerPool {
  private readonly workers: PoolWorker[] = [];
  private nextTaskId = 0;
  private closed = false;

  /**
   * Starts `size` workers that each build the pipeline from `pipeline`. `imports` are module
   * specifiers (absolute paths or URLs) that every worker imports first, for example
   * modules that register custom transforms.
   */
  constructor(size: number, pipeline: readonly TransformConfig[], imports: readonly string[] = []) {
    const workerData: PipelineWorkerData = { pipeline: [...pipeline], imports: [...imports] };
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL('./pipeline_worker_entry.mjs', import.meta.url), { workerData });
      const entry: PoolWorker = { worker, pending: new Map() };
      worker.on('message', (result: PipelineResult) => this.settle(entry, result));
      worker.on('error', (error) => {
        entry.failure = error;
        this.failAll(entry, error);
      });
      worker.on('exit', (code) => {
        if (this.closed) return;
        entry.failure ??= new RladetError(`DataLoader worker exited with code ${code}`);
        this.failAll(entry, entry.failure);
      });
      worker.unref();
      this.workers.push(entry);
    }
  }

  get size(): number {
    return this.workers.length;
  }

  /** Runs the pipeline on `sample` in the least busy worker, with the random source seeded by `seed`. */
  run(sample: Sample, seed: number): Promise<Sample> {
    if (this.closed) return Promise.reject(new RladetError('DataLoader worker pool is closed'));
    const alive = this.workers.filter((candidate) => candidate.failure === undefined);
    if (alive.length === 0) {
      const cause = this.workers[0]?.failure;
      return Promise.reject(new RladetError(`every DataLoader worker has stopped: ${cause?.message ?? 'no workers'}`, { cause }));
    }
    const entry = alive.reduce((best, candidate) => (candidate.pending.size < best.pending.size ? candidate : best));
    const id = this.nextTaskId++;
    return new Promise<Sample>((resolve, reject) => {
      entry.pending.set(id, { resolve, reject });
      // A worker with work in flight keeps the process alive; an idle one does not.
      entry.worker.ref();
      entry.worker.postMessage({ id, sample, seed } satisfies PipelineTask);
    });
  }

  /** Stops every worker; tasks still in flight are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    for (const entry of this.workers) this.failAll(entry, new RladetError('DataLoader worker pool was closed'));
    await Promise.all(this.workers.map((entry) => entry.worker.terminate()));
  }

  private settle(entry: PoolWorker, result: PipelineResult): void {
    const task = entry.pending.get(result.id);
    if (task === undefined) return;
    entry.pending.delete(result.id);
    if (entry.pending.size === 0) entry.worker.unref();
    if ('sample' in result) {
      task.resolve(result.sample);
      return;
    }
    const ErrorClass = ERROR_CLASSES[result.error.name] ?? Error;
    const error = new ErrorClass(result.error.message);
    if (result.error.stack !== undefined) error.stack = result.error.stack;
    task.reject(error);
  }

  private failAll(entry: PoolWorker, error: Error): void {
    for (const task of entry.pending.values()) task.reject(error);
    entry.pending.clear();
    entry.worker.unref();
  }
}
