import { COCO, COCOeval, cocoStatsToMetrics, formatMapCopypaste, type CategoryMetrics, type CocoBboxResult } from '../coco/index.ts';
import type { CocoDataset } from '../datasets/coco_dataset.ts';
import type { DataLoader } from '../datasets/loader.ts';
import { ProgressBar } from '../engine/progress.ts';
import type { Detections, Detector } from '../models/types.ts';
import { getLogger } from '../utils/logger.ts';

const logger = getLogger('eval');

export interface ImageDetections {
  imageId: number;
  detections: Detections;
}

/** Runs `model.predict` over every batch of `loader` (in dataset order) and frees each batch. */
export async function inferDataset(model: Detector, loader: DataLoader, label = 'inference'): Promise<ImageDetections[]> {
  model.eval();
  const output: ImageDetections[] = [];
  const bar = new ProgressBar(label, loader.numBatches());
  let done = 0;
  for await (const batch of loader.iterate(0)) {
    let detections: Detections[];
    try {
      detections = await model.predict(batch.images, batch.metas);
    } finally {
      batch.images.dispose();
    }
    batch.metas.forEach((meta, i) => output.push({ imageId: meta.imageId, detections: detections[i]! }));
    done += 1;
    bar.update(done);
  }
  bar.clear();
  return output;
}

/**
 * Converts detections to COCO results: contiguous labels back to category ids, xyxy boxes to
 * [x, y, width, height] (MMDetection 2.x's xyxy2xywh, no +1). Scores and coordinates are
 * float32 values widened to numbers.
 */
export function toCocoResults(images: readonly ImageDetections[], labelToCatId: (label: number) => number): CocoBboxResult[] {
  const results: CocoBboxResult[] = [];
  for (const { imageId, detections } of images) {
    const { boxes, scores, labels } = detections;
    for (let i = 0; i < scores.length; i++) {
      const x1 = boxes[4 * i]!;
      const y1 = boxes[4 * i + 1]!;
      results.push({
        image_id: imageId,
        category_id: labelToCatId(labels[i]!),
        bbox: [x1, y1, boxes[4 * i + 2]! - x1, boxes[4 * i + 3]! - y1],
        score: scores[i]!,
      });
    }
  }
  return results;
}

export interface BboxEvaluation {
  /** The 12 COCO stats in pycocotools' order. */
  stats: number[];
  /** MMDetection names: bbox_mAP, bbox_mAP_50, ..., with full precision. */
  metrics: Record<string, number>;
  /** pycocotools' summary table. */
  table: string;
  copypaste: string;
  perCategory: CategoryMetrics[];
}

/**
 * COCO box evaluation of `results` against the annotation file (or index) `groundTruth`,
 * with pycocotools' default parameters. With no results at all every category with ground
 * truth scores 0 (pycocotools would fail to load an empty result list).
 */
export function evaluateBbox(groundTruth: string | COCO, results: CocoBboxResult[]): BboxEvaluation {
  const gt = typeof groundTruth === 'string' ? new COCO(groundTruth) : groundTruth;
  if (results.length === 0) logger.warn('no detections at all: every AP is 0');
  const evaluator = new COCOeval(gt, gt.loadRes(results), 'bbox');
  evaluator.evaluate();
  evaluator.accumulate();
  const { stats, text } = evaluator.summarize();
  return {
    stats,
    metrics: cocoStatsToMetrics(stats, { prefix: 'bbox', maxDets: evaluator.params.maxDets, decimals: null }),
    table: text,
    copypaste: formatMapCopypaste(stats),
    perCategory: evaluator.perCategory(),
  };
}

/** Inference on a dataset followed by box evaluation against its annotation file. */
export async function evaluateDetector(
  model: Detector,
  dataset: CocoDataset,
  loader: DataLoader,
): Promise<BboxEvaluation & { results: CocoBboxResult[] }> {
  const detections = await inferDataset(model, loader, 'evaluate');
  const results = toCocoResults(detections, (label) => dataset.labelToCatId(label));
  const evaluation = evaluateBbox(dataset.annFile, results);
  return { ...evaluation, results };
}
