import {
  COCO,
  COCOeval,
  cocoStatsToMetrics,
  formatMapCopypaste,
  type CategoryMetrics,
  type CocoBboxResult,
  type CocoResult,
} from '../coco/index.ts';
import type { CocoDataset } from '../datasets/coco_dataset.ts';
import type { DataLoader } from '../datasets/loader.ts';
import { ProgressBar } from '../engine/progress.ts';
import type { Detections, Detector } from '../models/types.ts';
import { DataError } from '../utils/errors.ts';
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
 * [x, y, width, height] (MMDetection 2.x's xyxy2xywh, no +1) and, for models that predict
 * masks, the masks as `segmentation` RLEs. Scores and coordinates are float32 values widened
 * to numbers.
 */
export function toCocoResults(images: readonly ImageDetections[], labelToCatId: (label: number) => number): CocoBboxResult[] {
  const results: CocoBboxResult[] = [];
  for (const { imageId, detections } of images) {
    const { boxes, scores, labels, masks } = detections;
    if (masks !== undefined && masks.length !== scores.length) {
      throw new DataError(`image ${imageId}: ${masks.length} masks for ${scores.length} detections; expected one mask per detection`);
    }
    for (let i = 0; i < scores.length; i++) {
      const x1 = boxes[4 * i]!;
      const y1 = boxes[4 * i + 1]!;
      const result: CocoBboxResult = {
        image_id: imageId,
        category_id: labelToCatId(labels[i]!),
        bbox: [x1, y1, boxes[4 * i + 2]! - x1, boxes[4 * i + 3]! - y1],
        score: scores[i]!,
      };
      if (masks !== undefined) result.segmentation = masks[i]!;
      results.push(result);
    }
  }
  return results;
}

/** COCO evaluation of one iouType. */
export interface BboxEvaluation {
  /** The 12 COCO stats in pycocotools' order. */
  stats: number[];
  /** MMDetection names: bbox_mAP, bbox_mAP_50, ... (segm_mAP, ... for masks), with full precision. */
  metrics: Record<string, number>;
  /** pycocotools' summary table. */
  table: string;
  copypaste: string;
  perCategory: CategoryMetrics[];
}

/** Box evaluation and, when the results carry masks, mask evaluation. */
export interface DetectionEvaluation extends BboxEvaluation {
  /** The mask evaluation, present when every result has a segmentation. */
  segm?: BboxEvaluation;
}

function evaluateIouType(gt: COCO, results: readonly CocoResult[], iouType: 'bbox' | 'segm'): BboxEvaluation {
  const evaluator = new COCOeval(gt, gt.loadRes(results), iouType);
  evaluator.evaluate();
  evaluator.accumulate();
  const { stats, text } = evaluator.summarize();
  return {
    stats,
    metrics: cocoStatsToMetrics(stats, { prefix: iouType, maxDets: evaluator.params.maxDets, decimals: null }),
    table: text,
    copypaste: formatMapCopypaste(stats),
    perCategory: evaluator.perCategory(),
  };
}

/**
 * COCO box evaluation of `results` against the annotation file (or index) `groundTruth`,
 * with pycocotools' default parameters. With no results at all every category with ground
 * truth scores 0 (pycocotools would fail to load an empty result list).
 */
export function evaluateBbox(groundTruth: string | COCO, results: CocoBboxResult[]): BboxEvaluation {
  const gt = typeof groundTruth === 'string' ? new COCO(groundTruth) : groundTruth;
  if (results.length === 0) logger.warn('no detections at all: every AP is 0');
  return evaluateIouType(gt, results, 'bbox');
}

/**
 * Evaluates boxes and, when every result carries a mask (`segmentation`), masks too. The
 * metrics then contain bbox_* and segm_* names, and the table both summaries. As MMDetection 2.x
 * does since v2.12, the mask evaluation drops the results' boxes, so that loadRes takes each
 * detection's area from its mask. Throws DataError when only some results have masks.
 */
export function evaluateDetections(groundTruth: string | COCO, results: CocoBboxResult[]): DetectionEvaluation {
  const gt = typeof groundTruth === 'string' ? new COCO(groundTruth) : groundTruth;
  const bbox = evaluateBbox(gt, results);
  const withMasks = results.filter((result) => result.segmentation !== undefined).length;
  if (withMasks === 0) return bbox;
  if (withMasks !== results.length) {
    throw new DataError(`${withMasks} of ${results.length} results have a segmentation; mask evaluation needs one for every result`);
  }
  const maskResults: CocoResult[] = results.map(({ bbox: _box, ...rest }) => rest);
  const segm = evaluateIouType(gt, maskResults, 'segm');
  return {
    ...bbox,
    metrics: { ...bbox.metrics, ...segm.metrics },
    table: `bbox:\n${bbox.table}\nsegm:\n${segm.table}`,
    segm,
  };
}

/** Inference on a dataset followed by box (and, for mask models, mask) evaluation against its annotation file. */
export async function evaluateDetector(
  model: Detector,
  dataset: CocoDataset,
  loader: DataLoader,
): Promise<DetectionEvaluation & { results: CocoBboxResult[] }> {
  const detections = await inferDataset(model, loader, 'evaluate');
  const results = toCocoResults(detections, (label) => dataset.labelToCatId(label));
  const evaluation = evaluateDetections(dataset.annFile, results);
  return { ...evaluation, results };
}
