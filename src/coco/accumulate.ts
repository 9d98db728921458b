/**
 * Accumulation of per-image results into precision and recall (pycocotools'
 * COCOeval.accumulate), for every IoU threshold, category, area range and maxDets.
 */
import { FALSE_POSITIVE, TRUE_POSITIVE, type EvaluationState } from './evaluate.ts';
import type { Params } from './params.ts';

/** numpy's np.spacing(1), added to precision denominators as pycocotools does. */
const EPSILON = Number.EPSILON;

/**
 * Accumulated results. Arrays are row-major (C order) with the shapes in `counts`:
 * precision and scores [T, R, K, A, M], recall [T, K, A, M], where T = iouThrs, R = recThrs,
 * K = categories, A = area ranges and M = maxDets. Entries without ground truth are -1.
 */
export interface AccumulatedEval {
  params: Params;
  counts: [T: number, R: number, K: number, A: number, M: number];
  /** Local time of accumulation as 'YYYY-MM-DD HH:MM:SS'. */
  date: string;
  precision: Float64Array;
  recall: Float64Array;
  /** Score of the detection at which each precision value was read. */
  scores: Float64Array;
}

function formatDate(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** Returns the first index i < length with sorted[i] >= value, or length (numpy's searchsorted, side='left'). */
function searchSortedLeft(sorted: Float64Array, length: number, value: number): number {
  let low = 0;
  let high = length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle]! < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/**
 * Returns the detections of groups [firstGroup, endGroup) (one category) by descending
 * score, ties in concatenation order, as numpy's stable argsort of the negated scores in
 * pycocotools. Each group's detections are already in that order, so a bottom-up merge of
 * the groups' runs sorts them without a comparison callback.
 */
function mergeGroupsByScore(state: EvaluationState, firstGroup: number, endGroup: number): Int32Array {
  const scores = state.dtScores;
  const dtStart = state.groupDtStart[firstGroup]!;
  const count = state.groupDtStart[endGroup]! - dtStart;
  let order = new Int32Array(count);
  let merged = new Int32Array(count);
  for (let n = 0; n < count; n++) order[n] = dtStart + n;

  // Run r covers order[runStart[r], runStart[r + 1]).
  const runStart = new Int32Array(endGroup - firstGroup + 1);
  let numRuns = 0;
  for (let g = firstGroup; g < endGroup; g++) {
    if (state.groupDtStart[g + 1]! > state.groupDtStart[g]!) runStart[numRuns++] = state.groupDtStart[g]! - dtStart;
  }
  runStart[numRuns] = count;

  while (numRuns > 1) {
    let numMerged = 0;
    for (let r = 0; r < numRuns; r += 2) {
      const left = runStart[r]!;
      const middle = runStart[r + 1]!;
      const right = r + 2 <= numRuns ? runStart[r + 2]! : middle;
      runStart[numMerged++] = left;
      let i = left;
      let j = middle;
      let out = left;
      // Take from the left run on equal scores, which keeps ties in input order.
      while (i < middle && j < right) merged[out++] = scores[order[j]!]! > scores[order[i]!]! ? order[j++]! : order[i++]!;
      while (i < middle) merged[out++] = order[i++]!;
      while (j < right) merged[out++] = order[j++]!;
    }
    runStart[numMerged] = count;
    numRuns = numMerged;
    [order, merged] = [merged, order];
  }
  return order;
}

export function accumulateEvaluation(state: EvaluationState): AccumulatedEval {
  // Local copies: tsx compiles imported constants to getters, which are slow in the inner loop.
  const truePositive = TRUE_POSITIVE;
  const falsePositive = FALSE_POSITIVE;
  const p = state.params;
  const numThresholds = p.iouThrs.length;
  const numRecallThresholds = p.recThrs.length;
  const numCategories = state.categoryIds.length;
  const numAreas = p.areaRng.length;
  const numMaxDets = p.maxDets.length;
  const numAllDts = state.dtIds.length;

  const precision = new Float64Array(numThresholds * numRecallThresholds * numCategories * numAreas * numMaxDets).fill(-1);
  const scores = new Float64Array(precision.length).fill(-1);
  const recall = new Float64Array(numThresholds * numCategories * numAreas * numMaxDets).fill(-1);
  const precisionIndex = (t: number, r: number, k: number, a: number, m: number) =>
    (((t * numRecallThresholds + r) * numCategories + k) * numAreas + a) * numMaxDets + m;
  const recallIndex = (t: number, k: number, a: number, m: number) => ((t * numCategories + k) * numAreas + a) * numMaxDets + m;

  // Recall, precision and score at each true positive, in score order. Recall only changes at
  // true positives, so the precision envelope and the recall-threshold lookups need only these.
  let tpRecall = new Float64Array(0);
  let tpPrecision = new Float64Array(0);
  let tpScore = new Float64Array(0);
  let selected = new Int32Array(0);

  for (let k = 0; k < numCategories; k++) {
    const firstGroup = state.categoryGroupStart[k]!;
    const endGroup = state.categoryGroupStart[k + 1]!;
    if (firstGroup === endGroup) continue;

    // Detections of this category over all images, concatenated in image order and sorted by
    // descending score. Ties keep concatenation order, as numpy's stable mergesort does.
    const dtStart = state.groupDtStart[firstGroup]!;
    const numCategoryDts = state.groupDtStart[endGroup]! - dtStart;
    const order = mergeGroupsByScore(state, firstGroup, endGroup);

    if (selected.length < numCategoryDts) {
      selected = new Int32Array(numCategoryDts);
      tpRecall = new Float64Array(numCategoryDts);
      tpPrecision = new Float64Array(numCategoryDts);
      tpScore = new Float64Array(numCategoryDts);
    }

    for (let m = 0; m < numMaxDets; m++) {
      // The first maxDet detections of every image, still in global score order: cutting
      // each image's list keeps the relative order of what remains.
      const maxDet = p.maxDets[m]!;
      let numSelected = 0;
      for (let n = 0; n < numCategoryDts; n++) {
        if (state.dtRanks[order[n]!]! < maxDet) selected[numSelected++] = order[n]!;
      }

      for (let a = 0; a < numAreas; a++) {
        let numNonIgnoredGts = 0;
        for (let g = firstGroup; g < endGroup; g++) numNonIgnoredGts += state.nonIgnoredGtCounts[g * numAreas + a]!;
        if (numNonIgnoredGts === 0) continue;

        for (let t = 0; t < numThresholds; t++) {
          const outcomeRow = (a * numThresholds + t) * numAllDts;
          let truePositives = 0;
          let falsePositives = 0;
          for (let n = 0; n < numSelected; n++) {
            const outcome = state.dtOutcomes[outcomeRow + selected[n]!];
            if (outcome === falsePositive) {
              falsePositives++;
            } else if (outcome === truePositive) {
              tpRecall[truePositives] = (truePositives + 1) / numNonIgnoredGts;
              tpPrecision[truePositives] = (truePositives + 1) / (falsePositives + (truePositives + 1) + EPSILON);
              tpScore[truePositives] = state.dtScores[selected[n]!]!;
              truePositives++;
            }
          }
          recall[recallIndex(t, k, a, m)] = numSelected > 0 ? truePositives / numNonIgnoredGts : 0;

          // Precision envelope: each value becomes the maximum precision at any higher recall.
          // Between true positives precision only falls, so the maximum is reached at one.
          for (let n = truePositives - 1; n > 0; n--) {
            if (tpPrecision[n]! > tpPrecision[n - 1]!) tpPrecision[n - 1] = tpPrecision[n]!;
          }

          // Precision at each recall threshold: pycocotools reads it at the first detection whose
          // recall reaches the threshold. As there, the first threshold beyond the reached recall
          // and every later one get 0.
          let reachable = numSelected > 0;
          for (let r = 0; r < numRecallThresholds; r++) {
            const index = precisionIndex(t, r, k, a, m);
            const threshold = p.recThrs[r]!;
            if (reachable && threshold <= 0) {
              // Recall is >= 0 from the first detection on, true positive or not.
              precision[index] = truePositives > 0 ? tpPrecision[0]! : 0;
              scores[index] = state.dtScores[selected[0]!]!;
              continue;
            }
            const n = reachable ? searchSortedLeft(tpRecall, truePositives, threshold) : truePositives;
            if (n >= truePositives) {
              reachable = false;
              precision[index] = 0;
              scores[index] = 0;
              continue;
            }
            precision[index] = tpPrecision[n]!;
            scores[index] = tpScore[n]!;
          }
        }
      }
    }
  }

  return {
    params: p,
    counts: [numThresholds, numRecallThresholds, numCategories, numAreas, numMaxDets],
    date: formatDate(new Date()),
    precision,
    recall,
    scores,
  };
}
