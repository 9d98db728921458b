import { ConfigError } from '../utils/errors.ts';
import { checkOptionKeys } from './config.ts';

/**
 * Checks the keys and values of a detection config's run sections (data loading, schedule,
 * runner, logging, checkpoints, evaluation), so that a misspelled key or a bad value from a
 * config file or `--cfg-options` fails before training instead of being ignored. Components
 * (model, datasets, transforms, optimizer) check their own options when they are built.
 */

type Check = (value: unknown, path: string) => void;

function describe(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

function fail(path: string, expected: string, value: unknown): never {
  throw new ConfigError(`${path}: expected ${expected}, got ${describe(value)}`);
}

const positiveInteger: Check = (value, path) => {
  if (!Number.isInteger(value) || (value as number) < 1) fail(path, 'a positive integer', value);
};

const nonNegativeInteger: Check = (value, path) => {
  if (!Number.isInteger(value) || (value as number) < 0) fail(path, 'a non-negative integer', value);
};

const positiveNumber: Check = (value, path) => {
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) fail(path, 'a positive number', value);
};

const boolean: Check = (value, path) => {
  if (typeof value !== 'boolean') fail(path, 'true or false', value);
};

const object: Check = (value, path) => {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(path, 'an object', value);
};

const anything: Check = () => {};

function oneOf(...choices: readonly unknown[]): Check {
  return (value, path) => {
    if (!choices.includes(value)) fail(path, `one of ${choices.map((choice) => JSON.stringify(choice)).join(', ')}`, value);
  };
}

/** Epoch numbers after which the lr drops, in increasing order. */
const lrSteps: Check = (value, path) => {
  if (!Array.isArray(value) || value.some((epoch) => !Number.isInteger(epoch) || epoch < 0)) {
    fail(path, 'a list of epoch numbers (non-negative integers)', value);
  }
  for (let i = 1; i < value.length; i++) {
    if (value[i] <= value[i - 1]) fail(path, 'epoch numbers in increasing order', value);
  }
};

const warmupRatio: Check = (value, path) => {
  if (typeof value !== 'number' || !(value > 0 && value <= 1)) fail(path, 'a number in (0, 1]', value);
};

/** Checks an optional section: an object whose keys are all in `checks` and whose required keys are present. */
function section(checks: Record<string, Check>, required: readonly string[] = []): Check {
  return (value, path) => {
    object(value, path);
    const options = value as Record<string, unknown>;
    checkOptionKeys(path, options, Object.keys(checks));
    for (const key of required) {
      if (options[key] === undefined) throw new ConfigError(`${path}: missing '${key}'`);
    }
    for (const [key, check] of Object.entries(checks)) {
      if (options[key] !== undefined) check(options[key], `${path}.${key}`);
    }
  };
}

const gradClip: Check = (value, path) => {
  if (value === null) return;
  section({ maxNorm: positiveNumber }, ['maxNorm'])(value, path);
};

const TOP_LEVEL: Record<string, Check> = {
  model: object,
  data: section(
    { imagesPerBatch: positiveInteger, prefetch: nonNegativeInteger, workers: nonNegativeInteger, train: object, val: object, test: object },
    ['imagesPerBatch', 'train', 'val', 'test'],
  ),
  optimizer: object,
  optimizerConfig: section({ gradClip }),
  lrConfig: section(
    {
      policy: oneOf('step'),
      step: lrSteps,
      gamma: positiveNumber,
      warmup: oneOf('linear', 'constant', null),
      warmupIters: nonNegativeInteger,
      warmupRatio,
    },
    ['policy', 'step'],
  ),
  // runner.workers is checked with the backend and batch size in resolveWorkerCount.
  runner: section({ type: oneOf('EpochBasedRunner'), maxEpochs: positiveInteger, workers: anything }, ['maxEpochs']),
  autoScaleLr: section({ enable: boolean, baseBatchSize: positiveInteger }),
  checkpointConfig: section({ interval: positiveInteger }),
  logConfig: section({ interval: positiveInteger }),
  evaluation: section({ interval: positiveInteger, metric: oneOf('bbox') }),
  seed: nonNegativeInteger,
  // The backend name is checked when the backend starts, with the list of choices.
  backend: anything,
  loadFrom: (value, path) => {
    if (value !== null && typeof value !== 'string') fail(path, 'a checkpoint path or null', value);
  },
};

/** Checks the top-level keys of a detection config and its run sections; `source` names the config file in errors. */
export function checkRunConfig(config: Record<string, unknown>, source: string): void {
  try {
    checkOptionKeys('config', config, Object.keys(TOP_LEVEL));
    for (const [key, check] of Object.entries(TOP_LEVEL)) {
      if (config[key] !== undefined) check(config[key], key);
    }
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(`${source}: ${error.message}`, { cause: error });
    throw error;
  }
}
