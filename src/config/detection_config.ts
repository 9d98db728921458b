import type { BackendChoice } from '../backends/index.ts';
import type { DatasetConfig, DetectorConfig } from './component_types.ts';

/**
 * The top-level config of a detection run, the counterpart of MMDetection 2.x's merged
 * `_base_` files (model, dataset, schedule, runtime) in camelCase.
 */
export interface DetectionConfig {
  model: DetectorConfig;
  data: DataConfig;
  optimizer: OptimizerConfig;
  optimizerConfig?: { gradClip?: { maxNorm: number } | null };
  lrConfig: LrConfig;
  runner: {
    type: 'EpochBasedRunner';
    maxEpochs: number;
    /**
     * Data-parallel replicas in worker threads, or 'auto': one per core, at most one per image
     * of the batch, on the wasm and cpu backends, and 1 on 'tensorflow' (default 1).
     */
    workers?: number | 'auto';
  };
  /** Linear lr scaling: `optimizer.lr` is for `baseBatchSize` images per iteration. */
  autoScaleLr?: { enable: boolean; baseBatchSize: number };
  checkpointConfig?: { interval: number };
  logConfig?: { interval: number };
  evaluation?: { interval: number; metric: 'bbox' };
  seed?: number;
  backend?: BackendChoice;
  /** Checkpoint to start from (weights only), like MMDetection's `load_from`. */
  loadFrom?: string | null;
}

export interface DataConfig {
  imagesPerBatch: number;
  /** Batches loaded ahead of the training step (default 2). */
  prefetch?: number;
  /** Worker threads that run the data pipeline (default 0: the main thread). */
  workers?: number;
  train: DatasetConfig;
  val: DatasetConfig;
  test: DatasetConfig;
}

export type OptimizerConfig =
  | { type: 'SGD'; lr: number; momentum?: number; weightDecay?: number; nesterov?: boolean }
  | { type: 'AdamW'; lr: number; betas?: [number, number]; eps?: number; weightDecay?: number };

export interface LrConfig {
  policy: 'step';
  step: number[];
  gamma?: number;
  warmup?: 'linear' | 'constant' | null;
  warmupIters?: number;
  warmupRatio?: number;
}
