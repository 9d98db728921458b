import { ConfigError } from '../utils/errors.ts';

export interface StepLrOptions {
  /** Epochs (1-based count of finished epochs) after which the rate is multiplied by `gamma`. */
  step: readonly number[];
  gamma?: number;
  warmup?: 'linear' | 'constant' | null;
  warmupIters?: number;
  warmupRatio?: number;
}

/**
 * MMCV's epoch-based step policy with warm-up (StepLrUpdaterHook). The regular rate for the
 * 0-based epoch e is base * gamma^(number of steps s with e >= s). During the first
 * `warmupIters` iterations (0-based global iteration i) the linear warm-up gives
 *   regular * (1 - (1 - i / warmupIters) * (1 - warmupRatio)),
 * so iteration 0 runs at warmupRatio * regular and the ramp ends at the regular rate.
 */
export class StepLrSchedule {
  readonly step: readonly number[];
  readonly gamma: number;
  readonly warmup: 'linear' | 'constant' | null;
  readonly warmupIters: number;
  readonly warmupRatio: number;

  constructor(
    readonly baseLr: number,
    options: StepLrOptions,
  ) {
    this.step = [...options.step].sort((a, b) => a - b);
    this.gamma = options.gamma ?? 0.1;
    this.warmup = options.warmup ?? null;
    this.warmupIters = options.warmupIters ?? 0;
    this.warmupRatio = options.warmupRatio ?? 0.001;
    if (!(baseLr > 0)) throw new ConfigError(`optimizer.lr: expected > 0, got ${baseLr}`);
    if (this.warmup !== null && !(this.warmupIters > 0)) {
      throw new ConfigError(`lrConfig.warmupIters: expected > 0 with warmup '${this.warmup}', got ${this.warmupIters}`);
    }
  }

  /** Learning rate for a 0-based epoch and 0-based global iteration. */
  lrAt(epoch: number, iteration: number): number {
    const passed = this.step.filter((s) => epoch >= s).length;
    const regular = this.baseLr * this.gamma ** passed;
    if (this.warmup === null || iteration >= this.warmupIters) return regular;
    if (this.warmup === 'constant') return regular * this.warmupRatio;
    const k = (1 - iteration / this.warmupIters) * (1 - this.warmupRatio);
    return regular * (1 - k);
  }
}

/** Linear scaling rule: the config's rate is for `baseBatchSize` images per iteration. */
export function scaleLrToBatch(lr: number, batchSize: number, baseBatchSize: number): number {
  return (lr * batchSize) / baseBatchSize;
}
