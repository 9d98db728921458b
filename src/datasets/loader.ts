/**
 * DataLoader: batches of collated samples with seeded shuffling and prefetching.
 *
 * The order of an epoch depends only on (seed, epoch), and the random source of each
 * sample (flips, multi-scale draws) only on (seed, epoch, position in the epoch). So
 * `iterate(epoch, { startBatch })` after a restart yields exactly the batches that the
 * uninterrupted run would have yielded from that point.
 *
 * Prefetching starts loading the next `prefetchBatches` batches while the caller works on
 * the current one. Image decoding (sharp) runs on libuv's thread pool, so it always overlaps
 * with the caller's work. The JavaScript transforms (resize, flip, normalize, pad) run on
 * the main thread whenever the caller awaits, unless `workers` moves them to worker threads.
 * Workers give the same samples as the main thread, because each sample's random source
 * depends only on (seed, epoch, position).
 */
import { checkOptionKeys } from '../config/config.ts';
import { ConfigError } from '../utils/errors.ts';
import { collate, type Batch } from './collate.ts';
import { createRandom, mixSeed, randomInt, shuffledIndices, type RandomSource } from './random.ts';
import type { Dataset, Sample } from './sample.ts';
import { PipelineWorkerPool } from './worker_pool.ts';

export interface DataLoaderOptions {
  /** Samples per batch. */
  batchSize: number;
  /** Shuffle every epoch (default true). Without shuffling, batches follow the dataset order. */
  shuffle?: boolean;
  /**
   * Put only images of the same orientation (wider than tall, or not) into one batch, as
   * MMDetection 2.x's GroupSampler, which its training loaders use. Each group is filled up
   * to a multiple of `batchSize` with random repeats from the same group. Default: the value
   * of `shuffle`, when the dataset provides `aspectRatioFlag`.
   */
  groupByAspectRatio?: boolean;
  /** Seed of the shuffling and of the per-sample random sources (default 0). */
  seed?: number;
  /** Drop a last batch smaller than `batchSize` (default false). */
  dropLast?: boolean;
  /** Batches loaded ahead of the one being consumed (default 2; 0 loads on demand). */
  prefetchBatches?: number;
  /** Passed to collate: round the batch height and width up to multiples of this (default 1). */
  sizeDivisor?: number;
  /**
   * Worker threads that run the dataset's pipeline (default 0: the main thread runs it).
   * The dataset must provide `prepareItem` and `pipelineConfigs`, as CocoDataset does.
   */
  workers?: number;
  /** Modules every worker imports before building the pipeline, such as ones that register custom transforms. */
  workerImports?: string[];
}

export interface LoadedBatch extends Batch {
  epoch: number;
  /** Position of this batch in the epoch. */
  batchIndex: number;
  /** Dataset indices of the samples, in batch order. */
  indices: number[];
  /** Milliseconds the caller waited for this batch: zero when prefetching kept up. */
  waitMs: number;
}

export interface IterateOptions {
  /** First batch to yield (default 0), for resuming in the middle of an epoch. */
  startBatch?: number;
}

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly groupByAspectRatio: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly prefetchBatches: number;
  private readonly sizeDivisor: number;
  readonly workers: number;
  private readonly workerImports: string[];
  private pool: PipelineWorkerPool | undefined;
  /** Totals over the life of the loader. */
  readonly stats = { batches: 0, waitMs: 0 };

  constructor(
    readonly dataset: Dataset,
    options: DataLoaderOptions,
  ) {
    checkOptionKeys('DataLoader', options, [
      'batchSize',
      'shuffle',
      'groupByAspectRatio',
      'seed',
      'dropLast',
      'prefetchBatches',
      'sizeDivisor',
      'workers',
      'workerImports',
    ]);
    if (!Number.isInteger(options.batchSize) || options.batchSize <= 0) {
      throw new ConfigError(`DataLoader: batchSize must be a positive integer, got ${JSON.stringify(options.batchSize)}`);
    }
    this.batchSize = options.batchSize;
    this.shuffle = options.shuffle ?? true;
    this.groupByAspectRatio = options.groupByAspectRatio ?? (this.shuffle && dataset.aspectRatioFlag !== undefined);
    if (this.groupByAspectRatio && dataset.aspectRatioFlag === undefined) {
      throw new ConfigError('DataLoader: groupByAspectRatio needs a dataset with aspectRatioFlag()');
    }
    if (this.groupByAspectRatio && !this.shuffle) {
      throw new ConfigError('DataLoader: groupByAspectRatio needs shuffle, because the groups are drawn at random');
    }
    this.seed = options.seed ?? 0;
    this.dropLast = options.dropLast ?? false;
    this.prefetchBatches = options.prefetchBatches ?? 2;
    if (!Number.isInteger(this.prefetchBatches) || this.prefetchBatches < 0) {
      throw new ConfigError(`DataLoader: prefetchBatches must be an integer >= 0, got ${JSON.stringify(options.prefetchBatches)}`);
    }
    this.sizeDivisor = options.sizeDivisor ?? 1;
    this.workers = options.workers ?? 0;
    if (!Number.isInteger(this.workers) || this.workers < 0) {
      throw new ConfigError(`DataLoader: workers must be an integer >= 0, got ${JSON.stringify(options.workers)}`);
    }
    if (this.workers > 0 && (dataset.prepareItem === undefined || dataset.pipelineConfigs === undefined)) {
      throw new ConfigError('DataLoader: workers > 0 needs a dataset with prepareItem() and pipelineConfigs');
    }
    this.workerImports = options.workerImports ?? [];
  }

  /** Stops the worker threads, if any were started. The loader starts new ones if it is iterated again. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }

  /** Returns the dataset indices of one epoch, in the order they are batched. */
  epochOrder(epoch: number): number[] {
    const count = this.dataset.length;
    if (!this.shuffle) return Array.from({ length: count }, (_, i) => i);
    const random = createRandom(mixSeed(this.seed, epoch));
    if (!this.groupByAspectRatio) return shuffledIndices(count, random);
    return this.groupedOrder(random);
  }

  /** MMDetection 2.x GroupSampler: shuffle each orientation group, pad it to full batches, shuffle the batches. */
  private groupedOrder(random: RandomSource): number[] {
    const groups: number[][] = [[], []];
    for (let index = 0; index < this.dataset.length; index++) groups[this.dataset.aspectRatioFlag!(index)]!.push(index);
    const batches: number[][] = [];
    for (const group of groups) {
      if (group.length === 0) continue;
      const order = shuffledIndices(group.length, random).map((i) => group[i]!);
      const padded = Math.ceil(order.length / this.batchSize) * this.batchSize;
      while (order.length < padded) order.push(group[randomInt(random, 0, group.length - 1)]!);
      for (let start = 0; start < order.length; start += this.batchSize) batches.push(order.slice(start, start + this.batchSize));
    }
    return shuffledIndices(batches.length, random).flatMap((i) => batches[i]!);
  }

  /** Returns the batches of an epoch as lists of dataset indices. */
  epochBatches(epoch: number): number[][] {
    const order = this.epochOrder(epoch);
    const batches: number[][] = [];
    for (let start = 0; start < order.length; start += this.batchSize) {
      const batch = order.slice(start, start + this.batchSize);
      if (batch.length < this.batchSize && this.dropLast) break;
      batches.push(batch);
    }
    return batches;
  }

  /** Returns the number of batches in an epoch. */
  numBatches(epoch = 0): number {
    return this.epochBatches(epoch).length;
  }

  /**
   * Yields the batches of `epoch`. The caller owns each batch's `images` tensor and must
   * dispose it. Leaving the loop early stops further loading; batches already in flight
   * finish in the background and are discarded (they hold no tensors).
   */
  async *iterate(epoch: number, options: IterateOptions = {}): AsyncGenerator<LoadedBatch, void, undefined> {
    const batches = this.epochBatches(epoch);
    const startBatch = options.startBatch ?? 0;
    if (!Number.isInteger(startBatch) || startBatch < 0 || startBatch > batches.length) {
      throw new RangeError(`DataLoader.iterate: startBatch must be in 0..${batches.length}, got ${startBatch}`);
    }

    const pending = new Map<number, Promise<Sample[]>>();
    const load = (batchIndex: number): void => {
      if (batchIndex >= batches.length || pending.has(batchIndex)) return;
      const promise = this.loadSamples(epoch, batchIndex, batches[batchIndex]!);
      // The rejection is handled when the batch is awaited; this keeps Node from reporting
      // it as unhandled while the batch waits in the queue.
      promise.catch(() => undefined);
      pending.set(batchIndex, promise);
    };

    for (let batchIndex = startBatch; batchIndex < batches.length; batchIndex++) {
      const requested = performance.now();
      for (let ahead = 0; ahead <= this.prefetchBatches; ahead++) load(batchIndex + ahead);
      const samples = await pending.get(batchIndex)!;
      pending.delete(batchIndex);
      const waitMs = performance.now() - requested;
      this.stats.batches += 1;
      this.stats.waitMs += waitMs;
      const batch = collate(samples, { sizeDivisor: this.sizeDivisor });
      yield { ...batch, epoch, batchIndex, indices: batches[batchIndex]!, waitMs };
    }
  }

  private loadSamples(epoch: number, batchIndex: number, indices: number[]): Promise<Sample[]> {
    if (this.workers > 0 && this.pool === undefined) {
      this.pool = new PipelineWorkerPool(this.workers, this.dataset.pipelineConfigs!, this.workerImports);
    }
    const pool = this.pool;
    return Promise.all(
      indices.map((index, offset) => {
        const seed = mixSeed(this.seed, epoch, batchIndex * this.batchSize + offset);
        if (pool !== undefined) return pool.run(this.dataset.prepareItem!(index), seed);
        return this.dataset.getItem(index, { random: createRandom(seed) });
      }),
    );
  }
}
