import { availableParallelism } from 'node:os';

import { ConfigError } from '../../utils/errors.ts';
import { getLogger } from '../../utils/logger.ts';

const logger = getLogger('train');

/** `runner.workers`: a number of data-parallel replicas, or 'auto'. */
export type WorkersSetting = number | 'auto';

/** Backends whose replicas run in worker threads: they use one core each under Node. */
const THREADED_BACKENDS = ['wasm', 'cpu'];

/**
 * Resolves `runner.workers` to a number of replicas for the active tfjs backend. Absent means 1
 * (a single process). On wasm and cpu, 'auto' means one replica per core, but at most one per
 * image of the batch. On the native 'tensorflow' backend, which already uses every core
 * itself, 'auto' means 1, and an explicit number above 1 is reduced to 1 with a warning.
 */
export function resolveWorkerCount(setting: WorkersSetting | undefined, backend: string, batchSize: number, cores = availableParallelism()): number {
  if (setting === undefined) return 1;
  const threaded = THREADED_BACKENDS.includes(backend);
  if (setting === 'auto') return threaded ? Math.max(1, Math.min(cores, batchSize)) : 1;
  if (!Number.isInteger(setting) || setting < 1) {
    throw new ConfigError(`runner.workers: expected a positive integer or 'auto', got ${JSON.stringify(setting)}`);
  }
  if (setting === 1) return 1;
  if (!threaded) {
    logger.warn(`runner.workers is ${setting}, but the '${backend}' backend runs multithreaded in one process, so training uses 1 worker`);
    return 1;
  }
  if (setting > batchSize) {
    throw new ConfigError(
      `runner.workers: ${setting} workers need at least ${setting} images per batch, but data.imagesPerBatch is ${batchSize}. ` +
        `Use at most ${batchSize} workers or a larger batch.`,
    );
  }
  return setting;
}
