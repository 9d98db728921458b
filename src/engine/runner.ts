import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';

import type { DetectionConfig } from '../config/detection_config.ts';
import type { Detector } from '../models/types.ts';
import { getLogger } from '../utils/logger.ts';
import { type CheckpointMeta, findLatestCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.ts';
import { StepLrSchedule, scaleLrToBatch } from './lr_schedule.ts';
import { MetricsWriter } from './metrics_log.ts';
import { buildOptimizer } from './optimizer.ts';
import { ParallelTrainer, type ParallelStepResult } from './parallel/parallel_trainer.ts';
import { resolveWorkerCount } from './parallel/worker_count.ts';
import { ProgressBar, formatDuration } from './progress.ts';
import { type Batch, type StepResult, trainStep } from './train_step.ts';

const logger = getLogger('train');

/** Batches of one epoch; `epoch` is 0-based and fixes the shuffle order. */
export interface TrainLoader {
  readonly numBatches: number;
  readonly batchSize: number;
  epoch(epoch: number): AsyncIterable<Batch>;
}

export type EvaluateFn = (model: Detector, epoch: number) => Promise<Record<string, number>>;

export interface RunnerOptions {
  model: Detector;
  config: DetectionConfig;
  workDir: string;
  trainLoader: TrainLoader;
  evaluate?: EvaluateFn;
  /** A checkpoint path, or 'latest' for the newest one in the work dir. */
  resumeFrom?: string;
  /**
   * Modules that each data-parallel worker imports before it builds the model, such as
   * modules that register custom components (absolute paths or file URLs).
   * NOTE: configs cannot list these yet, so tools/train.ts trains a component registered
   * outside src/ only with one worker.
   */
  workerImports?: string[];
}

export interface TrainSummary {
  epochs: number;
  iterations: number;
  /** Metrics of the last evaluation, if any ran. */
  metrics: Record<string, number>;
  lastCheckpoint?: string;
}

/** Running means of the loss terms over the current log interval. */
class LossAverager {
  private sums: Record<string, number> = {};
  private count = 0;

  add(losses: Record<string, number>): void {
    for (const [k, v] of Object.entries(losses)) this.sums[k] = (this.sums[k] ?? 0) + v;
    this.count += 1;
  }

  takeMeans(): Record<string, number> {
    const means: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.sums)) means[k] = v / Math.max(this.count, 1);
    this.sums = {};
    this.count = 0;
    return means;
  }
}

/** Tensor counts of a log line: the main thread's, then each worker's in data-parallel training. */
function tensorText(record: { numTensors: number; workerTensors?: number[] }): string {
  if (record.workerTensors === undefined) return String(record.numTensors);
  return `${record.numTensors} (workers ${record.workerTensors.join(', ')})`;
}

/**
 * Runs the epoch-based training loop, like MMCV's EpochBasedRunner with its default hooks. It
 * applies the lr schedule and writes a log line every `logConfig.interval` iterations (with a
 * progress bar on a terminal) and metrics to `<workDir>/metrics.jsonl`. Every
 * `checkpointConfig.interval` epochs it saves a checkpoint atomically, and every
 * `evaluation.interval` epochs it evaluates. A resumed run continues with the checkpoint's lr,
 * iteration and optimizer state.
 *
 * With `runner.workers` above 1 the steps run data-parallel in worker threads (see
 * parallel/parallel_trainer.ts). Then `model` contains the weights of replica 0 only after each
 * evaluation, each checkpoint and the end of training, which use it.
 */
export async function runTraining(options: RunnerOptions): Promise<TrainSummary> {
  const { model, config, workDir, trainLoader } = options;
  const maxEpochs = config.runner.maxEpochs;
  const batchSize = trainLoader.batchSize;
  const scale = config.autoScaleLr?.enable === true ? config.autoScaleLr.baseBatchSize : undefined;
  const baseLr = scale === undefined ? config.optimizer.lr : scaleLrToBatch(config.optimizer.lr, batchSize, scale);
  const schedule = new StepLrSchedule(baseLr, config.lrConfig);
  const optimizer = buildOptimizer(config.optimizer as unknown as { type: string } & Record<string, unknown>);
  const gradClip = config.optimizerConfig?.gradClip?.maxNorm;
  const logInterval = config.logConfig?.interval ?? 50;
  const checkpointInterval = config.checkpointConfig?.interval ?? 1;
  const evalInterval = config.evaluation?.interval ?? 1;
  const metricsWriter = new MetricsWriter(join(workDir, 'metrics.jsonl'));
  if (scale !== undefined) {
    logger.info(`lr ${config.optimizer.lr} is for ${scale} images per batch; scaled to ${baseLr} for ${batchSize}`);
  }

  let startEpoch = 0;
  let iteration = 0;
  let metrics: Record<string, number> = {};
  let lastCheckpoint: string | undefined;
  if (options.resumeFrom !== undefined) {
    const path = options.resumeFrom === 'latest' ? findLatestCheckpoint(workDir) : options.resumeFrom;
    if (path === undefined) {
      logger.warn(`--resume: no checkpoint in ${workDir}; starting from scratch`);
    } else {
      const meta = await loadCheckpoint(path, model, optimizer);
      startEpoch = meta.epoch;
      iteration = meta.iteration;
      metrics = meta.metrics ?? {};
      lastCheckpoint = path;
      logger.info(`resumed from ${path}: epoch ${meta.epoch}, iteration ${meta.iteration}`);
      if (meta.epoch >= maxEpochs) {
        logger.warn(`nothing to train: the checkpoint is at epoch ${meta.epoch} and runner.maxEpochs is ${maxEpochs}; raise runner.maxEpochs to train further`);
      }
    }
  }

  const totalIterations = maxEpochs * trainLoader.numBatches;
  const workers = resolveWorkerCount(config.runner.workers, tf.getBackend(), batchSize);
  let parallel: ParallelTrainer | undefined;
  // Whether the replicas have trained since their weights were last copied into `model`.
  let modelBehind = false;
  const syncModel = async (): Promise<void> => {
    if (parallel === undefined || !modelBehind) return;
    await parallel.copyStateTo(model, optimizer);
    modelBehind = false;
  };
  const runStart = performance.now();
  const iterationAtStart = iteration;
  try {
    if (workers > 1) {
      const started = performance.now();
      parallel = await ParallelTrainer.start(model, optimizer, {
        workers,
        backend: tf.getBackend() as 'wasm' | 'cpu',
        model: config.model,
        optimizer: config.optimizer,
        ...(options.workerImports === undefined ? {} : { imports: options.workerImports }),
      });
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      logger.info(`data-parallel training on ${workers} worker threads (${tf.getBackend()} backend), started in ${seconds} s`);
    }
    for (let epoch = startEpoch; epoch < maxEpochs; epoch++) {
      model.train();
      const averager = new LossAverager();
      const bar = new ProgressBar(`epoch ${epoch + 1}/${maxEpochs}`, trainLoader.numBatches);
      let intervalTime = 0;
      let intervalDataTime = 0;
      let inEpoch = 0;
      let dataStart = performance.now();
      for await (const batch of trainLoader.epoch(epoch)) {
        const stepStart = performance.now();
        const dataTime = (stepStart - dataStart) / 1000;
        const lr = schedule.lrAt(epoch, iteration);
        let result: StepResult | ParallelStepResult;
        try {
          if (parallel === undefined) {
            result = trainStep(model, batch, optimizer, lr, iteration + 1, gradClip);
          } else {
            modelBehind = true;
            result = await parallel.step(batch, lr, iteration + 1, gradClip);
          }
        } finally {
          batch.images.dispose();
        }
        iteration += 1;
        inEpoch += 1;
        const stepEnd = performance.now();
        intervalTime += (stepEnd - dataStart) / 1000;
        intervalDataTime += dataTime;
        averager.add(result.losses);
        dataStart = stepEnd;

        const elapsed = (stepEnd - runStart) / 1000;
        const eta = (elapsed / (iteration - iterationAtStart)) * (totalIterations - iteration);
        bar.update(inEpoch, `loss ${result.losses['loss']!.toFixed(4)} eta ${formatDuration(eta)}`);
        if (inEpoch % logInterval === 0 || inEpoch === trainLoader.numBatches) {
          const count = inEpoch % logInterval === 0 ? logInterval : inEpoch % logInterval;
          const means = averager.takeMeans();
          const record = {
            mode: 'train',
            epoch: epoch + 1,
            iter: inEpoch,
            globalIter: iteration,
            lr,
            ...means,
            ...(result.gradNorm === undefined ? {} : { gradNorm: result.gradNorm }),
            time: intervalTime / count,
            dataTime: intervalDataTime / count,
            numTensors: tf.memory().numTensors,
            ...('workerTensors' in result ? { workerTensors: result.workerTensors } : {}),
          };
          bar.clear();
          const lossText = Object.entries(means).map(([k, v]) => `${k}: ${v.toFixed(4)}`).join(', ');
          logger.info(
            `Epoch [${epoch + 1}][${inEpoch}/${trainLoader.numBatches}] lr: ${lr.toExponential(3)}, eta: ${formatDuration(eta)}, ` +
              `time: ${record.time.toFixed(3)}, data_time: ${record.dataTime.toFixed(3)}, tensors: ${tensorText(record)}, ${lossText}`,
          );
          metricsWriter.write(record);
          intervalTime = 0;
          intervalDataTime = 0;
        }
      }
      bar.clear();

      const finished = epoch + 1;
      if (options.evaluate !== undefined && (finished % evalInterval === 0 || finished === maxEpochs)) {
        await syncModel();
        model.eval();
        metrics = await options.evaluate(model, finished);
        model.train();
        metricsWriter.write({ mode: 'val', epoch: finished, globalIter: iteration, ...metrics });
      }
      if (finished % checkpointInterval === 0 || finished === maxEpochs) {
        await syncModel();
        const meta: CheckpointMeta = { epoch: finished, iteration, config, metrics };
        lastCheckpoint = join(workDir, `epoch_${finished}.safetensors`);
        await saveCheckpoint(lastCheckpoint, model, optimizer, meta);
        logger.info(`saved checkpoint ${lastCheckpoint}`);
      }
    }
    await syncModel();
  } finally {
    await parallel?.close();
    optimizer.disposeState();
  }
  return { epochs: maxEpochs, iterations: iteration, metrics, ...(lastCheckpoint === undefined ? {} : { lastCheckpoint }) };
}

