/**
 * Per-image evaluation (pycocotools' COCOeval.evaluate and evaluateImg): detections are
 * matched to ground truth for every image, category, area range and IoU threshold.
 *
 * The annotations of all groups (one image and one category) are packed into flat typed
 * arrays, and each detection's outcome is stored as one byte per area range and threshold,
 * so that accumulate() needs no per-image objects. IoU matrices live only while their group
 * is matched.
 */
import { DataError } from '../utils/errors.ts';
import type { COCO } from './coco.ts';
import { groupByCell, type CellAnnotations } from './grouping.ts';
import { bboxIouComputer, invalidBoxError, type IouComputer, type IouContext } from './iou.ts';
import type { AreaRange, Params } from './params.ts';
import { boxIouMatrix } from './rle.ts';
import type { CocoAnnotation } from './types.ts';
import { describeValue } from './values.ts';

/** Outcome of a detection at one area range and IoU threshold. */
export const FALSE_POSITIVE = 0;
export const TRUE_POSITIVE = 1;
/** Matched to an ignored object, or unmatched and outside the area range: counts for nothing. */
export const IGNORED = 2;

export interface EvaluationState {
  /** Copy of the parameters used, with imgIds and catIds sorted and unique and maxDets sorted. */
  params: Params;
  /** Category id of each category index: params.catIds, or [-1] when useCats is false. */
  categoryIds: number[];
  /**
   * Groups are the (category, image) pairs with ground truth or detections, ordered by
   * category index, then by image index (one category, -1, when useCats is false).
   */
  numGroups: number;
  groupImage: Int32Array;
  groupCategory: Int32Array;
  /** Group g's ground truth is at [groupGtStart[g], groupGtStart[g + 1]) of the gt arrays. */
  groupGtStart: Int32Array;
  /** Group g's detections, by descending score and cut at maxDets[-1], are at [groupDtStart[g], groupDtStart[g + 1]). */
  groupDtStart: Int32Array;
  /** Groups of category index k are [categoryGroupStart[k], categoryGroupStart[k + 1]). */
  categoryGroupStart: Int32Array;
  /** Group index of (categoryIndex * numImages + imageIndex), or -1 for an empty pair. */
  groupOfCell: Int32Array;
  gtAnnotations: CocoAnnotation[];
  dtAnnotations: CocoAnnotation[];
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
  iouComputer: IouComputer;
  iouContext: IouContext;
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

/** Throws DataError naming the first annotation whose area (or score, for detections) is not a finite number. */
function checkNumberFields(cells: CellAnnotations, role: 'ground truth' | 'detection', source: string): void {
  for (let n = 0; n < cells.annotations.length; n++) {
    let field: 'area' | 'score' | undefined;
    if (!Number.isFinite(cells.areas[n])) field = 'area';
    else if (role === 'detection' && !Number.isFinite(cells.scores[n])) field = 'score';
    if (field === undefined) continue;
    const annotation = cells.annotations[n]!;
    throw new DataError(
      `${source}: ${role} annotation ${annotation.id} (image ${annotation.image_id}).${field}: ` +
        `expected a finite number, found ${describeValue(annotation[field])}`,
    );
  }
}

/**
 * Sorts order[0, count) by descending score, keeping equal scores in their input order, as
 * numpy's mergesort of the negated scores does in pycocotools.
 */
function sortByScore(order: Int32Array, count: number, scores: Float64Array): void {
  if (count <= 32) {
    for (let j = 1; j < count; j++) {
      const item = order[j]!;
      const score = scores[item]!;
      let i = j - 1;
      while (i >= 0 && scores[order[i]!]! < score) {
        order[i + 1] = order[i]!;
        i--;
      }
      order[i + 1] = item;
    }
    return;
  }
  const sorted = Array.from(order.subarray(0, count)).sort((a, b) => scores[b]! - scores[a]! || a - b);
  order.set(sorted);
}

const EMPTY_IOUS: Float64Array = new Float64Array(0);

/** Calls the IoU computer on one group and checks the size of what it returns. */
function computeGroupIous(
  computer: IouComputer,
  dts: readonly CocoAnnotation[],
  gts: readonly CocoAnnotation[],
  gtCrowd: Uint8Array,
  context: IouContext,
): Float64Array {
  if (dts.length === 0 || gts.length === 0) return EMPTY_IOUS;
  const ious = computer.computeIous(dts, gts, gtCrowd, context);
  if (ious.length !== dts.length * gts.length) {
    throw new Error(
      `IoU computer '${computer.iouType}' returned ${ious.length} values for ${dts.length} detections and ${gts.length} ground-truth objects`,
    );
  }
  return ious;
}

/**
 * Computes the box IoUs of one group from the boxes groupByCell read: ground truth
 * gtCells[gtStart, gtStart + numGts), detections dtCells[order[0..numDts)]. Throws the
 * DataError of the bbox IoU computer for a box that is not 4 finite numbers.
 */
function packedBoxIous(
  gtCells: CellAnnotations,
  gtStart: number,
  numGts: number,
  dtCells: CellAnnotations,
  order: Int32Array,
  numDts: number,
  gtCrowd: Uint8Array,
  scratch: { gt: Float64Array; dt: Float64Array },
): Float64Array {
  if (scratch.gt.length < 4 * numGts) scratch.gt = new Float64Array(8 * numGts);
  const gtBoxes = scratch.gt;
  const dtBoxes = scratch.dt;
  for (let n = 0; n < numGts; n++) {
    for (let k = 0; k < 4; k++) gtBoxes[4 * n + k] = gtCells.boxes![4 * (gtStart + n) + k]!;
    if (Number.isNaN(gtBoxes[4 * n])) throw invalidBoxError(gtCells.annotations[gtStart + n]!, 'ground truth');
  }
  for (let n = 0; n < numDts; n++) {
    const j = order[n]!;
    for (let k = 0; k < 4; k++) dtBoxes[4 * n + k] = dtCells.boxes![4 * j + k]!;
    if (Number.isNaN(dtBoxes[4 * n])) throw invalidBoxError(dtCells.annotations[j]!, 'detection');
  }
  return boxIouMatrix(dtBoxes, gtBoxes, gtCrowd, numDts, numGts);
}

/** Recomputes the IoU matrix of one group (D x G, ground truth in input order), for debugging output. */
export function groupIous(state: EvaluationState, group: number): Float64Array {
  const gts = state.gtAnnotations.slice(state.groupGtStart[group], state.groupGtStart[group + 1]);
  const dts = state.dtAnnotations.slice(state.groupDtStart[group], state.groupDtStart[group + 1]);
  const gtCrowd = state.gtCrowd.slice(state.groupGtStart[group], state.groupGtStart[group + 1]);
  return computeGroupIous(state.iouComputer, dts, gts, gtCrowd, state.iouContext);
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

  const numImages = p.imgIds.length;
  const categoryIds = p.useCats ? p.catIds : [-1];
  const numCells = categoryIds.length * numImages;
  const numAreas = p.areaRng.length;
  const maxDet = p.maxDets[p.maxDets.length - 1]!;
  // Box IoU, the common case, reads the boxes in the same pass as the other fields and needs
  // no per-group annotation arrays.
  const packedBoxes = iouComputer === bboxIouComputer;
  const gtCells = groupByCell(cocoGt, p.imgIds, p.catIds, p.useCats, 'ground truth', packedBoxes);
  const dtCells = groupByCell(cocoDt, p.imgIds, p.catIds, p.useCats, 'detection', packedBoxes);
  checkNumberFields(gtCells, 'ground truth', cocoGt.source);
  checkNumberFields(dtCells, 'detection', cocoDt.source);

  // Pass 1: count the groups and the detections that survive the maxDets cut.
  let numGroups = 0;
  let numGts = 0;
  let numDts = 0;
  let largestCell = 0;
  for (let c = 0; c < numCells; c++) {
    const cellGts = gtCells.cellStart[c + 1]! - gtCells.cellStart[c]!;
    const cellDts = dtCells.cellStart[c + 1]! - dtCells.cellStart[c]!;
    if (cellGts === 0 && cellDts === 0) continue;
    numGroups++;
    numGts += cellGts;
    numDts += Math.min(cellDts, maxDet);
    largestCell = Math.max(largestCell, cellDts);
  }

  const state: EvaluationState = {
    params: p,
    categoryIds,
    numGroups,
    groupImage: new Int32Array(numGroups),
    groupCategory: new Int32Array(numGroups),
    groupGtStart: new Int32Array(numGroups + 1),
    groupDtStart: new Int32Array(numGroups + 1),
    categoryGroupStart: new Int32Array(categoryIds.length + 1),
    groupOfCell: new Int32Array(numCells).fill(-1),
    gtAnnotations: new Array<CocoAnnotation>(numGts),
    dtAnnotations: new Array<CocoAnnotation>(numDts),
    gtIds: new Float64Array(numGts),
    gtAreas: new Float64Array(numGts),
    gtCrowd: new Uint8Array(numGts),
    dtIds: new Float64Array(numDts),
    dtAreas: new Float64Array(numDts),
    dtScores: new Float64Array(numDts),
    dtRanks: new Int32Array(numDts),
    dtOutcomes: new Uint8Array(numAreas * p.iouThrs.length * numDts),
    nonIgnoredGtCounts: new Int32Array(numGroups * numAreas),
    iouComputer,
    iouContext: { cocoGt, cocoDt },
  };

  const order = new Int32Array(largestCell);
  const buffers = new MatchBuffers();
  const boxScratch = { gt: new Float64Array(256), dt: new Float64Array(4 * Math.max(1, largestCell)) };

  // Pass 2: per group, sort and cut the detections, pack the fields, compute the IoUs and
  // match at every area range. The IoUs are dropped once matched.
  let group = 0;
  let gtOffset = 0;
  let dtOffset = 0;
  for (let k = 0; k < categoryIds.length; k++) {
    state.categoryGroupStart[k] = group;
    for (let i = 0; i < numImages; i++) {
      const cell = k * numImages + i;
      const gtStart = gtCells.cellStart[cell]!;
      const gtEnd = gtCells.cellStart[cell + 1]!;
      const dtStart = dtCells.cellStart[cell]!;
      const cellDts = dtCells.cellStart[cell + 1]! - dtStart;
      if (gtEnd === gtStart && cellDts === 0) continue;

      for (let n = 0; n < cellDts; n++) order[n] = dtStart + n;
      sortByScore(order, cellDts, dtCells.scores);
      const numGroupDts = Math.min(cellDts, maxDet);

      const numGroupGts = gtEnd - gtStart;
      for (let n = 0; n < numGroupGts; n++) {
        state.gtAnnotations[gtOffset + n] = gtCells.annotations[gtStart + n]!;
        state.gtIds[gtOffset + n] = gtCells.ids[gtStart + n]!;
        state.gtAreas[gtOffset + n] = gtCells.areas[gtStart + n]!;
        state.gtCrowd[gtOffset + n] = gtCells.crowd[gtStart + n]!;
      }
      for (let n = 0; n < numGroupDts; n++) {
        const j = order[n]!;
        state.dtAnnotations[dtOffset + n] = dtCells.annotations[j]!;
        state.dtIds[dtOffset + n] = dtCells.ids[j]!;
        state.dtAreas[dtOffset + n] = dtCells.areas[j]!;
        state.dtScores[dtOffset + n] = dtCells.scores[j]!;
        state.dtRanks[dtOffset + n] = n;
      }

      state.groupOfCell[cell] = group;
      state.groupImage[group] = i;
      state.groupCategory[group] = k;
      state.groupGtStart[group] = gtOffset;
      state.groupDtStart[group] = dtOffset;
      gtOffset += numGroupGts;
      dtOffset += numGroupDts;
      state.groupGtStart[group + 1] = gtOffset;
      state.groupDtStart[group + 1] = dtOffset;

      let ious = EMPTY_IOUS;
      if (numGroupGts > 0 && numGroupDts > 0) {
        const gtCrowd = state.gtCrowd.subarray(state.groupGtStart[group]!, gtOffset);
        if (packedBoxes) {
          ious = packedBoxIous(gtCells, gtStart, numGroupGts, dtCells, order, numGroupDts, gtCrowd, boxScratch);
        } else {
          const gts = gtCells.annotations.slice(gtStart, gtEnd);
          const dts = state.dtAnnotations.slice(dtOffset - numGroupDts, dtOffset);
          ious = computeGroupIous(iouComputer, dts, gts, gtCrowd, state.iouContext);
        }
      }
      for (let a = 0; a < numAreas; a++) {
        if (numGroupGts === 0) {
          recordUnmatched(state, group, a);
          continue;
        }
        matchGroup(state, group, ious, p.areaRng[a]!, buffers);
        recordOutcomes(state, group, a, buffers);
      }
      group++;
    }
  }
  state.categoryGroupStart[categoryIds.length] = group;
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
export function matchGroup(
  state: EvaluationState,
  group: number,
  ious: Float64Array,
  areaRange: AreaRange,
  buffers: MatchBuffers,
): void {
  const iouThrs = state.params.iouThrs;
  const numThresholds = iouThrs.length;
  const gtStart = state.groupGtStart[group]!;
  const dtStart = state.groupDtStart[group]!;
  const numGts = state.groupGtStart[group + 1]! - gtStart;
  const numDts = state.groupDtStart[group + 1]! - dtStart;
  const [minArea, maxArea] = areaRange;
  buffers.reserve(numGts, numDts, numThresholds);
  const { gtOrder, gtIgnore, sortedGtCrowd, sortedGtIds, dtMatches, gtMatches, dtIgnore } = buffers;

  // Order the ground truth: objects that count first, ignored ones last, each in input order.
  let position = 0;
  for (let pass = 0; pass < 2; pass++) {
    for (let g = 0; g < numGts; g++) {
      const n = gtStart + g;
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
        gtMatches[gtRow + best] = state.dtIds[dtStart + d]!;
      }
    }
  }

  for (let d = 0; d < numDts; d++) {
    const area = state.dtAreas[dtStart + d]!;
    if (area >= minArea && area <= maxArea) continue;
    for (let t = 0; t < numThresholds; t++) {
      if (dtMatches[t * numDts + d] === 0) dtIgnore[t * numDts + d] = 1;
    }
  }
}

/** Stores the outcome of each detection and the count of objects that are not ignored. */
/**
 * Stores the outcomes of a group without ground truth, what matchGroup and recordOutcomes
 * would give: every detection is a false positive, or ignored outside the area range.
 */
function recordUnmatched(state: EvaluationState, group: number, areaIndex: number): void {
  const numThresholds = state.params.iouThrs.length;
  const areaRange = state.params.areaRng[areaIndex]!;
  const minArea = areaRange[0];
  const maxArea = areaRange[1];
  const dtStart = state.groupDtStart[group]!;
  const dtEnd = state.groupDtStart[group + 1]!;
  const numAllDts = state.dtIds.length;
  for (let n = dtStart; n < dtEnd; n++) {
    const area = state.dtAreas[n]!;
    const outcome = area < minArea || area > maxArea ? IGNORED : FALSE_POSITIVE;
    for (let t = 0; t < numThresholds; t++) state.dtOutcomes[(areaIndex * numThresholds + t) * numAllDts + n] = outcome;
  }
  state.nonIgnoredGtCounts[group * state.params.areaRng.length + areaIndex] = 0;
}

function recordOutcomes(state: EvaluationState, group: number, areaIndex: number, buffers: MatchBuffers): void {
  const numThresholds = state.params.iouThrs.length;
  const dtStart = state.groupDtStart[group]!;
  const numDts = state.groupDtStart[group + 1]! - dtStart;
  const numGts = state.groupGtStart[group + 1]! - state.groupGtStart[group]!;
  const numAllDts = state.dtIds.length;
  for (let t = 0; t < numThresholds; t++) {
    const outcomeRow = (areaIndex * numThresholds + t) * numAllDts + dtStart;
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
  for (let j = 0; j < numGts; j++) if (buffers.gtIgnore[j] === 0) nonIgnored++;
  state.nonIgnoredGtCounts[group * state.params.areaRng.length + areaIndex] = nonIgnored;
}
