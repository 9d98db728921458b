import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { initBackend, type BackendChoice } from '../backends/index.ts';
import { dumpConfig } from '../config/config.ts';
import type { DetectionConfig } from '../config/detection_config.ts';
import { initWeights } from '../engine/pretrained.ts';
import { loadWeights } from '../engine/weights.ts';
import { runTraining, type TrainSummary } from '../engine/runner.ts';
import { setInitSeed } from '../nn/init.ts';
import { addLogSink, formatLogLine, getLogger } from '../utils/logger.ts';
import { buildDataset, buildDetector, buildLoader } from './build.ts';
import { evaluateDetector, type BboxEvaluation } from './evaluation.ts';
import type { CocoBboxResult } from '../coco/index.ts';

const logger = getLogger('train');

export interface TrainRunOptions {
  workDir: string;
  /** Checkpoint path to resume from, or 'latest' for the newest in the work dir. */
  resumeFrom?: string;
  /** Checkpoint of any supported format to start from (weights only, epoch 0), like MMDetection's load_from. */
  loadFrom?: string;
  /** Evaluate on `data.val` after each `evaluation.interval` epochs (default true). */
  validate?: boolean;
  backend?: BackendChoice;
  /** Data-parallel worker threads; overrides `runner.workers` of the config. */
  workers?: number | 'auto';
  /** Modules each data-parallel worker imports before building the model, such as ones that register custom components. */
  workerImports?: string[];
}

export interface TrainRunResult extends TrainSummary {
  /** The last evaluation, with its table, per-category numbers and the detections. */
  evaluation?: BboxEvaluation & { results: CocoBboxResult[] };
}

function timestampForFile(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
}

/**
 * Trains the detector of a resolved config: sets up the work dir (log file, resolved config),
 * the backend, the model, the data and the evaluation, then runs the epoch loop.
 */
export async function trainFromConfig(config: DetectionConfig, options: TrainRunOptions): Promise<TrainRunResult> {
  const { workDir } = options;
  if (options.workers !== undefined) config = { ...config, runner: { ...config.runner, workers: options.workers } };
  mkdirSync(workDir, { recursive: true });
  const logPath = join(workDir, `${timestampForFile()}.log`);
  const writeLogLine = (line: string): void => appendFileSync(logPath, line + '\n');
  const removeSink = addLogSink(writeLogLine);
  try {
    await dumpConfig(config, join(workDir, 'config.json'));
    const backend = await initBackend(options.backend ?? config.backend ?? 'auto');
    logger.info(`work dir ${workDir}; log ${logPath}; backend ${backend.name}`);

    const seed = config.seed ?? 0;
    setInitSeed(seed);
    const model = buildDetector(config.model);
    try {
      const loadFrom = options.loadFrom ?? config.loadFrom ?? undefined;
      // Resuming restores every weight from the checkpoint, so pretrained inits and loadFrom are skipped.
      if (options.resumeFrom === undefined) {
        await initWeights(model);
        if (loadFrom !== undefined && loadFrom !== null) await loadWeights(loadFrom, model, { target: 'model' });
      } else if (loadFrom !== undefined && loadFrom !== null) {
        logger.warn(`ignoring load-from ${loadFrom}: --resume restores every weight from its checkpoint`);
      }
      logger.info(`model ${config.model.type}: ${model.countParameters().toLocaleString('en-US')} parameters`);

      const trainSet = buildDataset(config.data.train, 'data.train');
      const trainLoader = buildLoader(trainSet, config.data, 'train', seed);
      let lastEvaluation: TrainRunResult['evaluation'];
      const validate = options.validate ?? true;
      const valSet = validate ? buildDataset(config.data.val, 'data.val') : undefined;
      const valLoader = valSet === undefined ? undefined : buildLoader(valSet, config.data, 'test', seed);
      try {
        const summary = await runTraining({
          model,
          config,
          workDir,
          trainLoader: {
            numBatches: trainLoader.numBatches(0),
            batchSize: trainLoader.batchSize,
            epoch: (epoch) => trainLoader.iterate(epoch),
          },
          ...(valSet === undefined || valLoader === undefined
            ? {}
            : {
                evaluate: async (detector, epoch) => {
                  const evaluation = await evaluateDetector(detector, valSet, valLoader);
                  lastEvaluation = evaluation;
                  logger.info(`evaluation after epoch ${epoch}:\n${evaluation.table}`);
                  logger.info(`bbox_mAP_copypaste: ${evaluation.copypaste}`);
                  return evaluation.metrics;
                },
              }),
          ...(options.resumeFrom === undefined ? {} : { resumeFrom: options.resumeFrom }),
          ...(options.workerImports === undefined ? {} : { workerImports: options.workerImports }),
        });
        return { ...summary, ...(lastEvaluation === undefined ? {} : { evaluation: lastEvaluation }) };
      } finally {
        await trainLoader.close();
        await valLoader?.close();
      }
    } finally {
      model.dispose();
    }
  } catch (error) {
    // The tool prints the error to stderr; the log file gets it too, so that it records why the run stopped.
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    try {
      writeLogLine(formatLogLine('error', 'train', `training stopped: ${reason}`));
    } catch {
      // An unwritable log file must not hide the error itself.
    }
    throw error;
  } finally {
    removeSink();
  }
}
