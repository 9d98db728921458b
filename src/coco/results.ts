/** Validation of detection results and their conversion to annotations (pycocotools' loadRes). */
import { DataError } from '../utils/errors.ts';
import type { COCO } from './coco.ts';
import type { CocoAnnotation, CocoResult } from './types.ts';
import { describeValue } from './values.ts';

const MAX_LISTED_IDS = 20;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/**
 * Validates the results against the ground truth `gt` and returns them as annotations: ids
 * 1..n in input order, iscrowd 0, area w * h and, where a result has no segmentation, its box
 * as a four-corner polygon. Like pycocotools, the first result decides the kind of all.
 * `source` names the results in error messages.
 */
export function resultsToAnnotations(results: unknown, gt: COCO, source: string): CocoAnnotation[] {
  if (!Array.isArray(results)) {
    throw new DataError(`${source}: expected an array of result objects, found ${describeValue(results)}`);
  }
  checkImageIds(results, gt, source);
  if (results.length === 0) return [];

  const first = results[0] as Record<string, unknown>;
  if ('caption' in first) {
    throw new DataError(`${source}[0]: caption results are not supported; expected box results with 'bbox'`);
  }
  if (Array.isArray(first['bbox']) && first['bbox'].length > 0) {
    return boxResultsToAnnotations(results, gt, source);
  }
  if ('segmentation' in first) {
    // TODO: mask results without a box need RLE area and toBbox from the mask utilities.
    throw new DataError(`${source}[0]: results with a segmentation but no bbox are not supported yet`);
  }
  throw new DataError(`${source}[0]: expected a result with 'bbox' [x, y, width, height], found ${describeValue(first)}`);
}

/** Rejects non-object results and lists the image ids that are not in the ground truth. */
function checkImageIds(results: readonly unknown[], gt: COCO, source: string): void {
  const unknownIds = new Set<number>();
  let firstUnknownIndex = -1;
  for (let index = 0; index < results.length; index++) {
    const result = results[index];
    if (!isRecord(result)) {
      throw new DataError(`${source}[${index}]: expected a result object, found ${describeValue(result)}`);
    }
    const imageId = result['image_id'];
    if (!isFiniteNumber(imageId)) {
      throw new DataError(`${source}[${index}].image_id: expected a number, found ${describeValue(imageId)}`);
    }
    if (!gt.imgs.has(imageId)) {
      if (firstUnknownIndex < 0) firstUnknownIndex = index;
      unknownIds.add(imageId);
    }
  }
  if (unknownIds.size === 0) return;

  const listed = [...unknownIds].slice(0, MAX_LISTED_IDS).join(', ');
  const more = unknownIds.size > MAX_LISTED_IDS ? ` and ${unknownIds.size - MAX_LISTED_IDS} more` : '';
  throw new DataError(
    `${source}: ${unknownIds.size} image id(s) of the results are not in the ground truth ${gt.source}: ` +
      `${listed}${more} (first at ${source}[${firstUnknownIndex}]). Evaluate against the annotation file the ` +
      `detections were made for.`,
  );
}

function boxResultsToAnnotations(results: readonly unknown[], gt: COCO, source: string): CocoAnnotation[] {
  const annotations = new Array<CocoAnnotation>(results.length);
  for (let index = 0; index < results.length; index++) {
    const result = results[index] as CocoResult;
    const where = `${source}[${index}]`;

    if (!isFiniteNumber(result.score)) {
      throw new DataError(`${where}.score: expected a finite number, found ${describeValue(result.score)}`);
    }
    if (!isFiniteNumber(result.category_id) || !gt.cats.has(result.category_id)) {
      throw new DataError(
        `${where}.category_id: ${describeValue(result.category_id)} is not a category id of the ground truth ${gt.source}`,
      );
    }
    const bbox = result.bbox;
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every(isFiniteNumber)) {
      throw new DataError(`${where}.bbox: expected 4 finite numbers [x, y, width, height], found ${describeValue(bbox)}`);
    }

    const [x, y, width, height] = bbox as [number, number, number, number];
    const annotation: CocoAnnotation = { ...result, id: index + 1, area: width * height, iscrowd: 0 };
    if (result.segmentation === undefined) {
      const right = x + width;
      const bottom = y + height;
      annotation.segmentation = [[x, y, x, bottom, right, bottom, right, y]];
    }
    annotations[index] = annotation;
  }
  return annotations;
}
