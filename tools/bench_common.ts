/** Helpers that the training-step benchmarks (bench_parallel.ts, bench_train_step.ts) share. */
import { buildDataset, buildLoader } from '../src/apis/build.ts';
import type { DetectionConfig } from '../src/config/detection_config.ts';
import type { Batch } from '../src/engine/train_step.ts';
import { RladetError } from '../src/utils/errors.ts';
import { UsageError } from '../src/utils/cli.ts';

/**
 * Parses a count option, which must be a positive integer (non-negative when `allowZero` is
 * set). Throws a UsageError that names `option` otherwise.
 */
export function parseCount(value: string, option: string, allowZero = false): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < (allowZero ? 0 : 1)) {
    throw new UsageError(`${option}: expected ${allowZero ? 'a non-negative' : 'a positive'} integer, got '${value}'`);
  }
  return parsed;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Loads the first `count` batches of the training loader of `config` (seeded with `config.seed`,
 * epoch 0) and closes the loader. The caller owns the batches' tensors.
 * Throws a RladetError when the loader yields no batch.
 */
export async function loadTrainingBatches(config: DetectionConfig, count: number): Promise<Batch[]> {
  const loader = buildLoader(buildDataset(config.data.train, 'data.train'), config.data, 'train', config.seed ?? 0);
  const batches: Batch[] = [];
  try {
    for await (const batch of loader.iterate(0)) {
      batches.push(batch);
      if (batches.length >= count) break;
    }
  } finally {
    await loader.close();
  }
  if (batches.length === 0) {
    throw new RladetError(`${config.data.train.annFile}: the training loader yielded no batch; check that the annotation file lists images with boxes`);
  }
  return batches;
}
