import { initBackend, type BackendChoice } from '../backends/index.ts';
import type { CocoBboxResult } from '../coco/index.ts';
import type { DetectionConfig } from '../config/detection_config.ts';
import { loadWeights } from '../engine/weights.ts';
import { writeFileAtomic } from '../utils/fs.ts';
import { getLogger } from '../utils/logger.ts';
import { buildDataset, buildDetector, buildLoader } from './build.ts';
import { evaluateBbox, inferDataset, toCocoResults, type BboxEvaluation } from './evaluation.ts';

const logger = getLogger('test');

export interface TestRunOptions {
  /** Detector weights: an rladet checkpoint, or a PyTorch or safetensors checkpoint with MMDetection key names. */
  checkpoint: string;
  /** Write the detections here in the COCO results format. */
  out?: string;
  /** Evaluate the detections against the test set's annotations. */
  evaluate?: boolean;
  backend?: BackendChoice;
}

export interface TestRunResult {
  results: CocoBboxResult[];
  evaluation?: BboxEvaluation;
}

/** Runs a trained detector over `data.test`, writes COCO results and evaluates them. */
export async function testFromConfig(config: DetectionConfig, options: TestRunOptions): Promise<TestRunResult> {
  await initBackend(options.backend ?? config.backend ?? 'auto');
  const model = buildDetector(config.model);
  try {
    // Strict, because evaluating a detector with some layers left at their initial values is never intended.
    const { file } = await loadWeights(options.checkpoint, model, { target: 'model', strict: true });
    logger.info(`loaded ${options.checkpoint} (epoch ${file.epoch ?? 'unknown'}, iteration ${file.iteration ?? 'unknown'})`);
    const dataset = buildDataset(config.data.test, 'data.test');
    const loader = buildLoader(dataset, config.data, 'test', config.seed ?? 0);
    let results: CocoBboxResult[];
    try {
      const detections = await inferDataset(model, loader, 'test');
      results = toCocoResults(detections, (label) => dataset.labelToCatId(label));
    } finally {
      await loader.close();
    }
    if (options.out !== undefined) {
      await writeFileAtomic(options.out, JSON.stringify(results));
      logger.info(`wrote ${results.length} detections to ${options.out}`);
    }
    if (options.evaluate !== true) return { results };
    return { results, evaluation: evaluateBbox(dataset.annFile, results) };
  } finally {
    model.dispose();
  }
}
