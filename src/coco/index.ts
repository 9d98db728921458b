/**
 * rladet/coco: COCO annotation index and detection evaluator, equal to pycocotools, with no
 * TensorFlow.js dependency.
 */
export { COCO, crowdFlag } from './coco.ts';
export type { CocoLogger, CocoOptions, GetAnnIdsFilter, GetCatIdsFilter, GetImgIdsFilter } from './coco.ts';
export { COCOeval } from './eval.ts';
export type { CocoEvalOptions, EvalImage } from './eval.ts';
export type { AccumulatedEval } from './accumulate.ts';
export { summaryStatNames } from './summarize.ts';
export type { CategoryMetrics, CocoSummary } from './summarize.ts';
export { Params, checkParams } from './params.ts';
export type { AreaRange } from './params.ts';
export { bboxIouComputer, getIouComputer, registerIouComputer, registeredIouTypes } from './iou.ts';
export type { IouComputer } from './iou.ts';
export { MMDET_MAX_DETS, cocoStatsToMetrics, formatMapCopypaste } from './metrics.ts';
export type { MetricNameOptions } from './metrics.ts';
export { readJsonFile, readJsonFileAsync } from './io.ts';
export { JsonChunkParser } from './json_stream.ts';
export { formatFixed, linspace, numpyMean, numpySum, pairwiseSum } from './numeric.ts';
export type {
  CocoAnnotation,
  CocoBboxResult,
  CocoBboxXywh,
  CocoCategory,
  CocoDataset,
  CocoImage,
  CocoPolygons,
  CocoResult,
  CocoRle,
  CocoSegmentation,
} from './types.ts';
export * as maskUtils from './mask.ts';
export type { BinaryMask, CompressedRle } from './mask.ts';
export { segmIouComputer } from './segmentation.ts';
