/** Validation of detection results and their conversion to annotations (pycocotools' loadRes). */
import { DataError } from '../utils/errors.ts';
import type { COCO } from './coco.ts';
import { rleObjectAreaAndBox } from './mask.ts';
import { place, Subscript, type Where } from './rle.ts';
import type { CocoAnnotation, CocoResult, CocoRle } from './types.ts';
import { describeValue, isFiniteNumber } from './values.ts';

const MAX_LISTED_IDS = 20;

/**
 * Tight mask boxes of mask results, computed by loadRes, so that mask evaluation can skip
 * decoding detections whose box overlaps no object. Entry i belongs to the result with
 * annotation id i + 1 and is valid while that annotation's segmentation and its counts are
 * the ones recorded here.
 */
export interface MaskBoxCache {
  boxes: Float64Array;
  segmentations: unknown[];
  counts: unknown[];
}

export interface LoadedResults {
  annotations: CocoAnnotation[];
  maskBoxes?: MaskBoxCache;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Validates the results against the ground truth `gt` and returns them as annotations with
 * ids 1..n in input order and iscrowd 0. Like pycocotools, the first result decides the kind
 * of all. With a non-empty `bbox` they are box results: area w * h and, where a result has
 * no segmentation, its box as a four-corner polygon. Otherwise, with a `segmentation`, they
 * are mask results: area and, where missing, box from the RLE. `source` names the results
 * in error messages.
 */
export function resultsToAnnotations(results: unknown, gt: COCO, source: string): LoadedResults {
  if (!Array.isArray(results)) {
    throw new DataError(`${source}: expected an array of result objects, found ${describeValue(results)}`);
  }
  checkImageIds(results, gt, source);
  if (results.length === 0) return { annotations: [] };

  const first = results[0] as Record<string, unknown>;
  if ('caption' in first) {
    throw new DataError(`${source}[0]: caption results are not supported; expected box results with 'bbox' or mask results with 'segmentation'`);
  }
  if (Array.isArray(first['bbox']) && first['bbox'].length > 0) {
    return { annotations: boxResultsToAnnotations(results, gt, source) };
  }
  if ('segmentation' in first) return maskResultsToAnnotations(results, gt, source);
  throw new DataError(
    `${source}[0]: expected a result with 'bbox' [x, y, width, height] or 'segmentation' (an RLE), found ${describeValue(first)}`,
  );
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

/** Checks the score and category id that every result needs. */
function checkScoreAndCategory(result: CocoResult, where: Where, gt: COCO): void {
  if (!isFiniteNumber(result.score)) {
    throw new DataError(`${place(where)}.score: expected a finite number, found ${describeValue(result.score)}`);
  }
  if (!isFiniteNumber(result.category_id) || !gt.cats.has(result.category_id)) {
    throw new DataError(
      `${place(where)}.category_id: ${describeValue(result.category_id)} is not a category id of the ground truth ${gt.source}`,
    );
  }
}

function checkBox(bbox: unknown, where: Where): asserts bbox is [number, number, number, number] {
  if (
    !Array.isArray(bbox) ||
    bbox.length !== 4 ||
    !isFiniteNumber(bbox[0]) ||
    !isFiniteNumber(bbox[1]) ||
    !isFiniteNumber(bbox[2]) ||
    !isFiniteNumber(bbox[3])
  ) {
    throw new DataError(`${place(where)}.bbox: expected 4 finite numbers [x, y, width, height], found ${describeValue(bbox)}`);
  }
}

function boxResultsToAnnotations(results: readonly unknown[], gt: COCO, source: string): CocoAnnotation[] {
  const annotations = new Array<CocoAnnotation>(results.length);
  for (let index = 0; index < results.length; index++) {
    const result = results[index] as CocoResult;
    const where = new Subscript(source, index);
    checkScoreAndCategory(result, where, gt);
    const bbox = result.bbox;
    checkBox(bbox, where);

    const [x, y, width, height] = bbox;
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

/**
 * Converts mask results as pycocotools' loadRes does: area is the mask's pixel count and a
 * result without a box gets the mask's tight box. Unlike pycocotools, uncompressed RLE counts
 * are accepted, a result with `bbox: []` gets the mask's box, and a mask whose size differs
 * from its image's is rejected (pycocotools would give it IoU -1 with every object).
 */
function maskResultsToAnnotations(results: readonly unknown[], gt: COCO, source: string): LoadedResults {
  const annotations = new Array<CocoAnnotation>(results.length);
  const cache: MaskBoxCache = {
    boxes: new Float64Array(4 * results.length),
    segmentations: new Array<unknown>(results.length),
    counts: new Array<unknown>(results.length),
  };
  const box = new Float64Array(4);
  for (let index = 0; index < results.length; index++) {
    const result = results[index] as CocoResult;
    const where = new Subscript(source, index);
    checkScoreAndCategory(result, where, gt);

    const segmentation: unknown = result.segmentation;
    if (Array.isArray(segmentation)) {
      throw new DataError(
        `${place(where)}.segmentation: mask results must be RLE objects {size: [height, width], counts}, found polygons ` +
          '(pycocotools reads only RLEs here too); encode the mask with frPyObjects and merge',
      );
    }
    const mask = rleObjectAreaAndBox(segmentation, box, new Subscript(where, 'segmentation'));
    const image = gt.imgs.get(result.image_id)!;
    if (image.height !== undefined && image.width !== undefined && (mask.height !== image.height || mask.width !== image.width)) {
      throw new DataError(
        `${place(where)}.segmentation.size: [${mask.height}, ${mask.width}] differs from image ${result.image_id}'s ` +
          `[height, width] [${image.height}, ${image.width}] in ${gt.source}`,
      );
    }
    cache.boxes.set(box, 4 * index);
    cache.segmentations[index] = segmentation;
    cache.counts[index] = (segmentation as CocoRle).counts;

    const annotation: CocoAnnotation = { ...result, id: index + 1, area: mask.area, iscrowd: 0 };
    if (result.bbox === undefined || (Array.isArray(result.bbox) && result.bbox.length === 0)) {
      annotation.bbox = [box[0]!, box[1]!, box[2]!, box[3]!];
    } else {
      checkBox(result.bbox, where);
    }
    annotations[index] = annotation;
  }
  return { annotations, maskBoxes: cache };
}
