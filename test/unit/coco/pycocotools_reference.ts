/** Fixture loading and comparisons that the bbox and segm tests against pycocotools' output share. */
import { readFileSync } from 'node:fs';

import type { ExecutionContext } from 'ava';

import { COCO, COCOeval } from '../../../src/coco/index.ts';

export const FIXTURES = new URL('../../fixtures/coco/', import.meta.url).pathname;
export const TOLERANCE = 1e-12;

/** pycocotools' output for one fixture, with the full precision and recall tables only in the dev40 files. */
export interface Reference {
  stats: number[];
  per_category: Array<{ category_id: number; AP: number; AP50: number; AP75: number; AR100: number }>;
  ap_tkam?: number[][][][];
  recall_tkam?: number[][][][];
}

/** Reads a JSON file below test/fixtures/coco. */
export function readFixtureJson<T>(name: string): T {
  return JSON.parse(readFileSync(FIXTURES + name, 'utf8')) as T;
}

/** Runs evaluate, accumulate and summarize on a ground-truth and a results file below test/fixtures/coco. */
export function evaluateFixture(gtFile: string, dtFile: string, iouType: 'bbox' | 'segm'): COCOeval {
  const gt = new COCO(FIXTURES + gtFile);
  const evaluator = new COCOeval(gt, gt.loadRes(FIXTURES + dtFile), iouType);
  evaluator.evaluate();
  evaluator.accumulate();
  evaluator.summarize();
  return evaluator;
}

/** Asserts that each summary number is within TOLERANCE of `expected`. */
export function assertStatsClose(t: ExecutionContext, stats: readonly number[], expected: readonly number[]): void {
  stats.forEach((value, index) => {
    t.true(Math.abs(value - expected[index]!) < TOLERANCE, `stats[${index}]: ${value} != ${expected[index]}`);
  });
}

/** Asserts that the category ids, AP, AP50, AP75 and AR100 of every category equal the reference's within TOLERANCE. */
export function assertPerCategoryClose(t: ExecutionContext, evaluator: COCOeval, reference: Reference): void {
  const perCategory = evaluator.perCategory();
  t.deepEqual(
    perCategory.map((row) => row.categoryId),
    reference.per_category.map((row) => row.category_id),
  );
  perCategory.forEach((row, k) => {
    const expected = reference.per_category[k]!;
    const pairs: Array<[string, number, number]> = [
      ['AP', row.ap, expected.AP],
      ['AP50', row.ap50, expected.AP50],
      ['AP75', row.ap75, expected.AP75],
      ['AR100', row.ar, expected.AR100],
    ];
    for (const [metric, actual, expectedValue] of pairs) {
      t.true(Math.abs(actual - expectedValue) < TOLERANCE, `category ${row.categoryId} ${metric}: ${actual} != ${expectedValue}`);
    }
  });
}

/**
 * Compares the accumulated precision and recall with the reference's ap_tkam and recall_tkam
 * tables, failing `t` at each entry that differs by TOLERANCE or more. Returns the number of
 * entries compared.
 */
export function comparePrecisionRecallTables(t: ExecutionContext, evaluator: COCOeval, reference: Reference): number {
  const evaluation = evaluator.eval!;
  const [T, R, K, A, M] = evaluation.counts;
  let checked = 0;
  for (let iou = 0; iou < T; iou++) {
    for (let k = 0; k < K; k++) {
      for (let a = 0; a < A; a++) {
        for (let m = 0; m < M; m++) {
          // The reference averages precision over the recall thresholds, -1 where there is no ground truth.
          let sum = 0;
          for (let r = 0; r < R; r++) sum += evaluation.precision[(((iou * R + r) * K + k) * A + a) * M + m]!;
          const first = evaluation.precision[((iou * R * K + k) * A + a) * M + m]!;
          const meanPrecision = first === -1 ? -1 : sum / R;
          const expectedPrecision = reference.ap_tkam![iou]![k]![a]![m]!;
          const recall = evaluation.recall[((iou * K + k) * A + a) * M + m]!;
          const expectedRecall = reference.recall_tkam![iou]![k]![a]![m]!;
          if (Math.abs(meanPrecision - expectedPrecision) >= TOLERANCE) {
            t.fail(`precision [${iou}][${k}][${a}][${m}]: ${meanPrecision} != ${expectedPrecision}`);
          }
          if (Math.abs(recall - expectedRecall) >= TOLERANCE) {
            t.fail(`recall [${iou}][${k}][${a}][${m}]: ${recall} != ${expectedRecall}`);
          }
          checked++;
        }
      }
    }
  }
  return checked;
}
