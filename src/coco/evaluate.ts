/**
 * Per-image evaluation (pycocotools' COCOeval.evaluate and evaluateImg): detections are
 * matched to ground truth for every image, category, area range and IoU threshold.
 *
 * The annotations of all groups (one image and one category) are packed into flat typed
 * arrays, and each detection's outcome is stored as one byte per area range and threshold,
 * so that accumulate() needs no per-image objects.
 */
import { DataError } from '../utils/errors.ts';
import { crowdFlag, type COCO } from './coco.ts';
import type { IouComputer } from './iou.ts';
import type { AreaRange, Params } from './params.ts';
import type { CocoAnnotation } from './types.ts';
import { describeValue } from './values.ts';

/** Outcome of a detection at one area range and IoU threshold. */
export const FALSE_POSITIVE = 0;
export const TRUE_POSITIVE = 1;
/** Matched to an ignored object, or unmatched and outside the area range: counts for nothing. */
export const IGNORED = 2;

/** The ground truth and detections of one image and one category (all categories when useCats is false). */
export interface Group {
  imageIndex: number;
  categoryIndex: number;
  gts: CocoAnnotation[];
  /** Detections sorted by descending score (stable), at most maxDets[-1] of them. */
  dts: CocoAnnotation[];
  /** Row-major D x G IoU matrix, ground truth in `gts` order. */
  ious: Float64Array;
  gtStart: number;
  dtStart: number;
}

export interface EvaluationState {
  /** Copy of the parameters used, with imgIds and catIds sorted and unique and maxDets sorted. */
  params: Params;
  /** Category id of each category index: params.catIds, or [-1] when useCats is false. */
  categoryIds: number[];
  /** Groups with ground truth or detections, ordered by category index, then by image index. */
  groups: Group[];
  /** Groups of category index k are groups[categoryGroupStart[k] .. categoryGroupStart[k + 1]). */
  categoryGroupStart: Int32Array;
  /** Group index of (categoryIndex * numImages + imageIndex), or -1 for an empty pair. */
  groupOfCell: Int32Array;
  /** Fields of all groups' annotations: group g's ground truth is at [gtStart, gtStart + G), its detections at [dtStart, dtStart + D). */
  gtIds: Float64Array;
  gtAreas: Float64Array;
  gtCrowd: Uint8Array;
  dtIds: Float64Array;
  dtAreas: Float64Array;
  dtScores: Float64Array;
  /** Position of each detection in its group's score order. */
  dtRanks: Int32Array;
  /** Outcome of detection n at area range a and threshold t: dtOutcomes[(a * T + t) * numDetections + n]. */
  dtOutcomes: Uint8Array;
  /** Number of ground-truth objects that are not ignored, per group and area range: [group * A + a]. */
  nonIgnoredGtCounts: Int32Array;
}

/** Per-image match arrays in pycocotools' layout (T rows of D or G entries), reused between groups. */
export class MatchBuffers {
  gtOrder = new Int32Array(0);
  gtIgnore = new Uint8Array(0);
  sortedGtCrowd = new Uint8Array(0);
  sortedGtIds = new Float64Array(0);
  dtMatches = new Float64Array(0);
  gtMatches = new Float64Array(0);
  dtIgnore = new Uint8Array(0);

  /** Grows the arrays so that they fit G ground-truth objects, D detections and T thresholds. */
  reserve(numGts: number, numDts: number, numThresholds: number): void {
    if (this.gtOrder.length < numGts) {
      const size = Math.max(numGts, 2 * this.gtOrder.length);
      this.gtOrder = new Int32Array(size);
      this.gtIgnore = new Uint8Array(size);
      this.sortedGtCrowd = new Uint8Array(size);
      this.sortedGtIds = new Float64Array(size);
    }
    if (this.gtMatches.length < numGts * numThresholds) {
      this.gtMatches = new Float64Array(Math.max(numGts * numThresholds, 2 * this.gtMatches.length));
    }
    if (this.dtMatches.length < numDts * numThresholds) {
      const size = Math.max(numDts * numThresholds, 2 * this.dtMatches.length);
      this.dtMatches = new Float64Array(size);
      this.dtIgnore = new Uint8Array(size);
    }
  }
}

function uniqueSorted(values: readonly number[]): number[] {
  return [...new Set(values)].sort((a, b) => a - b);
}

/** Groups the annotations of the evaluated images by image id, then category id, in file order. */
function bucketAnnotations(
  coco: COCO,
  imgIds: readonly number[],
  categoryFilter: ReadonlySet<number> | undefined,
  role: string,
): Map<number, Map<number, CocoAnnotation[]>> {
  const buckets = new Map<number, Map<number, CocoAnnotation[]>>();
  for (const imgId of imgIds) {
    const annotations = coco.imgToAnns.get(imgId);
    if (annotations === undefined) continue;
    const byCategory = new Map<number, CocoAnnotation[]>();
    for (const annotation of annotations) {
      if (categoryFilter !== undefined && !categoryFilter.has(annotation.category_id)) continue;
      if (coco.anns.get(annotation.id) !== annotation) {
        // pycocotools looks annotations up by id, so a repeated id silently replaces one object
        // with another. Rejecting it keeps the numbers meaningful.
        throw new DataError(`${coco.source}: ${role} annotation id ${annotation.id} is used more than once`);
      }
      const list = byCategory.get(annotation.category_id);
      if (list === undefined) byCategory.set(annotation.category_id, [annotation]);
      else list.push(annotation);
    }
    buckets.set(imgId, byCategory);
  }
  return buckets;
}

/** Throws DataError naming the annotation unless every annotation's area (and score, for detections) is a finite number. */
function checkNumberFields(annotations: readonly CocoAnnotation[], role: 'ground truth' | 'detection', source: string): void {
  for (const annotation of annotations) {
    let field: 'area' | 'score' | undefined;
    if (!Number.isFinite(annotation.area)) field = 'area';
    else if (role === 'detection' && !Number.isFinite(annotation.score)) field = 'score';
    if (field === undefined) continue;
    throw new DataError(
      `${source}: ${role} annotation ${annotation.id} (image ${annotation.image_id}).${field}: ` +
        `expected a finite number, found ${describeValue(annotation[field])}`,
    );
  }
}

/**
 * Runs the per-image evaluation of `cocoDt` against `cocoGt` with the parameters `params`
 * (imgIds, catIds and maxDets are normalised in place, as pycocotools does).
 */
export function evaluateImages(cocoGt: COCO, cocoDt: COCO, params: Params, iouComputer: IouComputer): EvaluationState {
  params.imgIds = uniqueSorted(params.imgIds);
  if (params.useCats) params.catIds = uniqueSorted(params.catIds);
  params.maxDets = [...params.maxDets].sort((a, b) => a - b);
  const p = params.clone();

  const imgIds = p.imgIds;
  const categoryIds = p.useCats ? p.catIds : [-1];
  const categoryFilter = p.useCats ? new Set(p.catIds) : undefined;
  const gtBuckets = bucketAnnotations(cocoGt, imgIds, categoryFilter, 'ground truth');
  const dtBuckets = bucketAnnotations(cocoDt, imgIds, categoryFilter, 'detection');
  const maxDet = p.maxDets[p.maxDets.length - 1]!;

  const annotationsOf = (buckets: Map<number, Map<number, CocoAnnotation[]>>, imgId: number, catId: number) => {
    const byCategory = buckets.get(imgId);
    if (byCategory === undefined) return [];
    if (p.useCats) return byCategory.get(catId) ?? [];
    return p.catIds.flatMap((id) => byCategory.get(id) ?? []);
  };

  // Pass 1: collect the groups, sort and cut their detections, compute their IoUs.
  const groups: Group[] = [];
  const categoryGroupStart = new Int32Array(categoryIds.length + 1);
  const groupOfCell = new Int32Array(categoryIds.length * imgIds.length).fill(-1);
  let numGts = 0;
  let numDts = 0;
  for (let k = 0; k < categoryIds.length; k++) {
    categoryGroupStart[k] = groups.length;
    for (let i = 0; i < imgIds.length; i++) {
      const gts = annotationsOf(gtBuckets, imgIds[i]!, categoryIds[k]!);
      const allDts = annotationsOf(dtBuckets, imgIds[i]!, categoryIds[k]!);
      if (gts.length === 0 && allDts.length === 0) continue;

      checkNumberFields(gts, 'ground truth', cocoGt.source);
      checkNumberFields(allDts, 'detection', cocoDt.source);
      // Array.prototype.sort is stable, like numpy's mergesort in pycocotools: ties keep input order.
      const dts = [...allDts].sort((a, b) => b.score! - a.score!).slice(0, maxDet);
      const gtIsCrowd = Uint8Array.from(gts, (gt) => (crowdFlag(gt) !== 0 ? 1 : 0));
      const ious = iouComputer.computeIous(dts, gts, gtIsCrowd);

      groupOfCell[k * imgIds.length + i] = groups.length;
      groups.push({ imageIndex: i, categoryIndex: k, gts, dts, ious, gtStart: numGts, dtStart: numDts });
      numGts += gts.length;
      numDts += dts.length;
    }
  }
  categoryGroupStart[categoryIds.length] = groups.length;

  const state: EvaluationState = {
    params: p,
    categoryIds,
    groups,
    categoryGroupStart,
    groupOfCell,
    gtIds: new Float64Array(numGts),
    gtAreas: new Float64Array(numGts),
    gtCrowd: new Uint8Array(numGts),
    dtIds: new Float64Array(numDts),
    dtAreas: new Float64Array(numDts),
    dtScores: new Float64Array(numDts),
    dtRanks: new Int32Array(numDts),
    dtOutcomes: new Uint8Array(p.areaRng.length * p.iouThrs.length * numDts),
    nonIgnoredGtCounts: new Int32Array(groups.length * p.areaRng.length),
  };

  // Pass 2: pack the annotations, then match every group at every area range.
  for (const group of groups) {
    for (let n = 0; n < group.gts.length; n++) {
      const gt = group.gts[n]!;
      state.gtIds[group.gtStart + n] = gt.id;
      state.gtAreas[group.gtStart + n] = gt.area!;
      state.gtCrowd[group.gtStart + n] = crowdFlag(gt) !== 0 ? 1 : 0;
    }
    for (let n = 0; n < group.dts.length; n++) {
      const dt = group.dts[n]!;
      state.dtIds[group.dtStart + n] = dt.id;
      state.dtAreas[group.dtStart + n] = dt.area!;
      state.dtScores[group.dtStart + n] = dt.score!;
      state.dtRanks[group.dtStart + n] = n;
    }
  }
  const buffers = new MatchBuffers();
  for (let g = 0; g < groups.length; g++) {
    for (let a = 0; a < p.areaRng.length; a++) {
      matchGroup(state, groups[g]!, p.areaRng[a]!, buffers);
      recordOutcomes(state, g, a, buffers);
    }
  }
  return state;
}

/**
 * Matches one group's detections to its ground truth at every IoU threshold for one area
 * range, exactly as pycocotools' evaluateImg does, and fills `buffers` in its layout.
 * Crowd objects and objects outside the range are ignored and sorted last (stable).
 * Each detection, best score first, takes the unmatched object with the highest
 * IoU >= threshold, and a later object wins a tie. Objects that count are preferred over
 * ignored ones. A crowd object stays available after a match. Unmatched detections outside
 * the range are ignored.
 */
export function matchGroup(state: EvaluationState, group: Group, areaRange: AreaRange, buffers: MatchBuffers): void {
  const iouThrs = state.params.iouThrs;
  const numThresholds = iouThrs.length;
  const numGts = group.gts.length;
  const numDts = group.dts.length;
  const [minArea, maxArea] = areaRange;
  buffers.reserve(numGts, numDts, numThresholds);
  const { gtOrder, gtIgnore, sortedGtCrowd, sortedGtIds, dtMatches, gtMatches, dtIgnore } = buffers;

  // Order the ground truth: objects that count first, ignored ones last, each in input order.
  let position = 0;
  for (let pass = 0; pass < 2; pass++) {
    for (let g = 0; g < numGts; g++) {
      const n = group.gtStart + g;
      const area = state.gtAreas[n]!;
      const ignored = state.gtCrowd[n] !== 0 || area < minArea || area > maxArea ? 1 : 0;
      if (ignored !== pass) continue;
      gtOrder[position] = g;
      gtIgnore[position] = ignored;
      sortedGtCrowd[position] = state.gtCrowd[n]!;
      sortedGtIds[position] = state.gtIds[n]!;
      position++;
    }
  }
  dtMatches.fill(0, 0, numThresholds * numDts);
  dtIgnore.fill(0, 0, numThresholds * numDts);
  gtMatches.fill(0, 0, numThresholds * numGts);

  const ious = group.ious;
  if (numGts > 0 && numDts > 0) {
    for (let t = 0; t < numThresholds; t++) {
      const threshold = Math.min(iouThrs[t]!, 1 - 1e-10);
      const gtRow = t * numGts;
      for (let d = 0; d < numDts; d++) {
        let bestIou = threshold;
        let best = -1;
        const iouRow = d * numGts;
        for (let j = 0; j < numGts; j++) {
          // A matched object is taken unless it is a crowd region. As in pycocotools, the test
          // is "matched detection id > 0", which holds because loadRes numbers detections from 1.
          if (gtMatches[gtRow + j]! > 0 && sortedGtCrowd[j] === 0) continue;
          // Once matched to an object that counts, stop at the first ignored object.
          if (best > -1 && gtIgnore[best] === 0 && gtIgnore[j] === 1) break;
          const iou = ious[iouRow + gtOrder[j]!]!;
          if (iou < bestIou) continue;
          bestIou = iou;
          best = j;
        }
        if (best === -1) continue;
        dtIgnore[t * numDts + d] = gtIgnore[best]!;
        dtMatches[t * numDts + d] = sortedGtIds[best]!;
        gtMatches[gtRow + best] = state.dtIds[group.dtStart + d]!;
      }
    }
  }

  for (let d = 0; d < numDts; d++) {
    const area = state.dtAreas[group.dtStart + d]!;
    if (area >= minArea && area <= maxArea) continue;
    for (let t = 0; t < numThresholds; t++) {
      if (dtMatches[t * numDts + d] === 0) dtIgnore[t * numDts + d] = 1;
    }
  }
}

/** Stores the outcome of each detection and the count of objects that are not ignored. */
function recordOutcomes(state: EvaluationState, groupIndex: number, areaIndex: number, buffers: MatchBuffers): void {
  const group = state.groups[groupIndex]!;
  const numThresholds = state.params.iouThrs.length;
  const numDts = group.dts.length;
  const numAllDts = state.dtIds.length;
  for (let t = 0; t < numThresholds; t++) {
    const outcomeRow = (areaIndex * numThresholds + t) * numAllDts + group.dtStart;
    for (let d = 0; d < numDts; d++) {
      const k = t * numDts + d;
      // A detection matched to an object with id 0 counts as unmatched, as in pycocotools,
      // whose match arrays store the object id and treat 0 as "no match".
      let outcome = FALSE_POSITIVE;
      if (buffers.dtIgnore[k] !== 0) outcome = IGNORED;
      else if (buffers.dtMatches[k] !== 0) outcome = TRUE_POSITIVE;
      state.dtOutcomes[outcomeRow + d] = outcome;
    }
  }
  let nonIgnored = 0;
  for (let j = 0; j < group.gts.length; j++) if (buffers.gtIgnore[j] === 0) nonIgnored++;
  state.nonIgnoredGtCounts[groupIndex * state.params.areaRng.length + areaIndex] = nonIgnored;
}
