// Hand-made boundary cases for COCOeval. The expected values are computed by hand from
// pycocotools' rules. Boxes are [x, y, width, height]. Identical boxes have IoU 1, disjoint ones 0.
import test, { type ExecutionContext } from 'ava';

import { COCO, COCOeval, type CocoAnnotation, type CocoDataset, type CocoResult } from '../../../src/coco/index.ts';

const TOLERANCE = 1e-12;
const NUM_RECALL_THRESHOLDS = 101;

interface GtOptions {
  categoryId?: number;
  iscrowd?: number;
}

function gtBox(id: number, imageId: number, bbox: number[], options: GtOptions = {}): CocoAnnotation {
  return {
    id,
    image_id: imageId,
    category_id: options.categoryId ?? 1,
    bbox,
    area: bbox[2]! * bbox[3]!,
    iscrowd: options.iscrowd ?? 0,
  };
}

function detection(imageId: number, bbox: number[], score: number, categoryId = 1): CocoResult {
  return { image_id: imageId, category_id: categoryId, bbox, score };
}

function dataset(imageIds: number[], annotations: CocoAnnotation[], categoryIds = [1]): CocoDataset {
  return {
    images: imageIds.map((id) => ({ id, width: 400, height: 400 })),
    categories: categoryIds.map((id) => ({ id, name: `class_${id}` })),
    annotations,
  };
}

function runEval(gt: CocoDataset, results: CocoResult[], configure?: (evaluator: COCOeval) => void): COCOeval {
  const cocoGt = new COCO(gt);
  const evaluator = new COCOeval(cocoGt, cocoGt.loadRes(results), 'bbox');
  configure?.(evaluator);
  evaluator.evaluate();
  evaluator.accumulate();
  evaluator.summarize();
  return evaluator;
}

/** Precision at IoU index t, recall threshold index r, category 0, area 'all', maxDets 100 (one category). */
function precisionAt(evaluator: COCOeval, t: number, r: number): number {
  const [, R, K, A, M] = evaluator.eval!.counts;
  return evaluator.eval!.precision[(((t * R + r) * K + 0) * A + 0) * M + (M - 1)]!;
}

/**
 * Asserts |actual - expected| < 1e-12. Hand-computed precision 1 comes out as 1 / (1 + 2^-52),
 * because pycocotools adds np.spacing(1) to every precision denominator.
 */
function assertNear(t: ExecutionContext, actual: number | undefined, expected: number, label: string): void {
  t.true(actual !== undefined && Math.abs(actual - expected) < TOLERANCE, `${label}: ${actual} != ${expected}`);
}

test('score ties keep input order in an image', (t) => {
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 10, 10])]);
  const hitFirst = runEval(gt, [detection(1, [0, 0, 10, 10], 0.9), detection(1, [50, 50, 10, 10], 0.9)]);
  const missFirst = runEval(gt, [detection(1, [50, 50, 10, 10], 0.9), detection(1, [0, 0, 10, 10], 0.9)]);

  // Hit then miss: precision 1 up to recall 1. Miss then hit: precision 0.5 everywhere.
  assertNear(t, hitFirst.stats[0], 1, 'stats[0]');
  assertNear(t, missFirst.stats[0], 0.5, 'stats[0]');
  t.deepEqual(missFirst.getEvalImgs()[0]!.dtIds, [1, 2]);
  t.deepEqual(missFirst.getEvalImgs()[0]!.dtMatches[0], [0, 1]);
});

test('score ties across images follow image ids', (t) => {
  const gt = dataset([1, 2], [gtBox(1, 1, [0, 0, 10, 10]), gtBox(2, 2, [0, 0, 10, 10])]);
  const missInFirstImage = [detection(2, [0, 0, 10, 10], 0.5), detection(1, [50, 50, 10, 10], 0.5)];
  const missInSecondImage = [detection(1, [0, 0, 10, 10], 0.5), detection(2, [50, 50, 10, 10], 0.5)];

  // Image 1's detection comes first whatever the input order. Miss then hit: recall 0.5 at
  // precision 0.5, so thresholds 0.00..0.50 (51 of 101) read 0.5. Hit then miss: they read 1.
  assertNear(t, runEval(gt, missInFirstImage).stats[0], 25.5 / NUM_RECALL_THRESHOLDS, 'miss in image 1: stats[0]');
  assertNear(t, runEval(gt, missInSecondImage).stats[0], 51 / NUM_RECALL_THRESHOLDS, 'miss in image 2: stats[0]');
});

test('crowd region matches two detections', (t) => {
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 40, 40], { iscrowd: 1 }), gtBox(2, 1, [60, 60, 20, 20])]);
  const evaluator = runEval(gt, [
    detection(1, [0, 0, 20, 20], 0.9),
    detection(1, [20, 20, 20, 20], 0.8),
    detection(1, [60, 60, 20, 20], 0.7),
  ]);

  // Both detections inside the crowd region match it and are ignored. If the first match used
  // the region up, the second would be a false positive ahead of the hit, and AP would be 0.5.
  assertNear(t, evaluator.stats[0], 1, 'stats[0]');
  const record = evaluator.getEvalImgs()[0]!;
  t.deepEqual(record.gtIds, [2, 1]);
  t.deepEqual(record.dtMatches[0], [1, 1, 2]);
  t.deepEqual(record.dtIgnore[0], [1, 1, 0]);
  t.deepEqual(record.gtMatches[0], [3, 2]);
});

test('crowd IoU divides by detection area', (t) => {
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 40, 40], { iscrowd: 1 })]);
  // Intersection 20 x 40 = 800 over the detection's 1600 gives 0.5 (plain IoU would be 1/3).
  const evaluator = runEval(gt, [detection(1, [0, 0, 20, 80], 0.9)]);
  const record = evaluator.getEvalImgs()[0]!;
  t.deepEqual(record.dtMatches[0], [1]);
  t.deepEqual(record.dtIgnore[0], [1]);
  t.deepEqual(record.dtMatches[1], [0]);
  t.deepEqual(record.dtIgnore[1], [0]);
});

test('ground truth outside area range is ignored', (t) => {
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 10, 10]), gtBox(2, 1, [100, 100, 200, 200])]);
  const evaluator = runEval(gt, [detection(1, [100, 100, 200, 200], 0.9), detection(1, [0, 0, 10, 10], 0.8)]);

  // In 'small' the large object is ignored, and so is the detection matched to it.
  assertNear(t, evaluator.stats[3], 1, 'stats[3]');
  assertNear(t, evaluator.stats[5], 1, 'stats[5]');
  assertNear(t, evaluator.stats[0], 1, 'stats[0]');
  t.is(evaluator.stats[4], -1);
  const smallRecord = evaluator.getEvalImgs()[1]!;
  t.deepEqual(smallRecord.aRng, [0, 1024]);
  t.deepEqual(smallRecord.gtIds, [1, 2]);
  t.deepEqual(smallRecord.gtIgnore, [0, 1]);
  t.deepEqual(smallRecord.dtIgnore[0], [1, 0]);
});

test('detection outside area range counts only when matched', (t) => {
  // Object area 900 (small). The hit has area 33 * 33 = 1089 (medium) and IoU 900 / 1089 = 0.826,
  // so it matches at thresholds 0.50..0.80 (7 of 10). The miss (area 1600) scores higher.
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 30, 30])]);
  const evaluator = runEval(gt, [detection(1, [60, 60, 40, 40], 0.95), detection(1, [0, 0, 33, 33], 0.9)]);

  // 'small': the unmatched miss is ignored and the matched hit counts, so AP is 1 at 7 thresholds.
  assertNear(t, evaluator.stats[3], 0.7, 'stats[3]');
  assertNear(t, evaluator.stats[9], 0.7, 'stats[9]');
  // 'all': the miss is a false positive ahead of the hit, so AP is 0.5 at those thresholds.
  assertNear(t, evaluator.stats[0], 0.35, 'stats[0]');
  t.is(evaluator.stats[4], -1);
});

test('image without detections lowers recall', (t) => {
  const gt = dataset([1, 2, 3], [gtBox(1, 1, [0, 0, 10, 10]), gtBox(2, 2, [0, 0, 10, 10])]);
  const evaluator = runEval(gt, [detection(1, [0, 0, 10, 10], 0.9)]);

  assertNear(t, evaluator.stats[0], 51 / NUM_RECALL_THRESHOLDS, 'stats[0]');
  assertNear(t, evaluator.stats[8], 0.5, 'stats[8]');
  const records = evaluator.getEvalImgs();
  t.is(records.length, 1 * 4 * 3);
  t.deepEqual(records[1]!.dtIds, []);
  t.deepEqual(records[1]!.gtIds, [2]);
  t.is(records[2], null);
});

test('image without ground truth adds false positives', (t) => {
  const gt = dataset([1, 2], [gtBox(1, 1, [0, 0, 10, 10])]);
  const evaluator = runEval(gt, [detection(1, [0, 0, 10, 10], 0.5), detection(2, [0, 0, 10, 10], 0.9)]);
  assertNear(t, evaluator.stats[0], 0.5, 'stats[0]');
  assertNear(t, evaluator.stats[8], 1, 'stats[8]');
});

test('category without ground truth is -1 and left out', (t) => {
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 10, 10])], [1, 2]);
  const evaluator = runEval(gt, [detection(1, [0, 0, 10, 10], 0.9), detection(1, [50, 50, 10, 10], 0.95, 2)]);

  const [first, second] = evaluator.perCategory();
  t.is(first!.categoryId, 1);
  t.is(first!.name, 'class_1');
  assertNear(t, first!.ap, 1, 'category 1 AP');
  assertNear(t, first!.ap50, 1, 'category 1 AP50');
  assertNear(t, first!.ap75, 1, 'category 1 AP75');
  t.is(first!.ar, 1);
  t.is(first!.maxDets, 100);
  t.deepEqual(second, { categoryId: 2, name: 'class_2', ap: -1, ap50: -1, ap75: -1, ar: -1, maxDets: 100 });
  assertNear(t, evaluator.stats[0], 1, 'stats[0]');
  assertNear(t, evaluator.stats[8], 1, 'stats[8]');
});

test('maxDets cuts per image and category', (t) => {
  const gt = dataset(
    [1],
    [
      gtBox(1, 1, [0, 0, 10, 10]),
      gtBox(2, 1, [20, 0, 10, 10]),
      gtBox(3, 1, [40, 0, 10, 10]),
      gtBox(4, 1, [0, 50, 10, 10], { categoryId: 2 }),
    ],
    [1, 2],
  );
  const evaluator = runEval(gt, [
    detection(1, [0, 0, 10, 10], 0.9),
    detection(1, [20, 0, 10, 10], 0.8),
    detection(1, [40, 0, 10, 10], 0.7),
    detection(1, [0, 50, 10, 10], 0.6, 2),
  ]);

  // AR@1: category 1 keeps its best detection (recall 1/3), category 2 its only one (recall 1).
  assertNear(t, evaluator.stats[6], (1 / 3 + 1) / 2, 'AR@1');
  assertNear(t, evaluator.stats[7], 1, 'stats[7]');
});

test('precision read at first recall >= threshold', (t) => {
  // Hit, miss, hit on 2 objects: recall 0.5, 0.5, 1 at precision 1, 0.5, 2/3.
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 10, 10]), gtBox(2, 1, [20, 0, 10, 10])]);
  const evaluator = runEval(gt, [
    detection(1, [0, 0, 10, 10], 0.9),
    detection(1, [50, 50, 10, 10], 0.8),
    detection(1, [20, 0, 10, 10], 0.7),
  ]);

  // numpy's searchsorted side='left': recall threshold 0.50 reads the first detection.
  assertNear(t, precisionAt(evaluator, 0, 50), 1, 'precision at recall 0.50');
  assertNear(t, precisionAt(evaluator, 0, 51), 2 / 3, 'precision at recall 0.51');
  assertNear(t, precisionAt(evaluator, 0, 100), 2 / 3, 'precision at recall 1.00');
  assertNear(t, evaluator.stats[1], (51 + 50 * (2 / 3)) / NUM_RECALL_THRESHOLDS, 'AP50');
});

test('precision envelope takes later maximum', (t) => {
  // Miss, hit, hit on 2 objects: precision 0, 0.5, 2/3 becomes 2/3 everywhere.
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 10, 10]), gtBox(2, 1, [20, 0, 10, 10])]);
  const evaluator = runEval(gt, [
    detection(1, [50, 50, 10, 10], 0.9),
    detection(1, [0, 0, 10, 10], 0.8),
    detection(1, [20, 0, 10, 10], 0.7),
  ]);

  assertNear(t, precisionAt(evaluator, 0, 0), 2 / 3, 'precision at recall 0.00');
  assertNear(t, precisionAt(evaluator, 0, 50), 2 / 3, 'precision at recall 0.50');
  assertNear(t, evaluator.stats[1], 2 / 3, 'AP50');
});

test('recall thresholds beyond reach read 0', (t) => {
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 10, 10]), gtBox(2, 1, [20, 0, 10, 10])]);
  const evaluator = runEval(gt, [detection(1, [0, 0, 10, 10], 0.9)]);
  assertNear(t, precisionAt(evaluator, 0, 50), 1, 'precision at recall 0.50');
  t.is(precisionAt(evaluator, 0, 51), 0);
  t.is(evaluator.eval!.scores[(((0 * 101 + 50) * 1 + 0) * 4 + 0) * 3 + 2], 0.9);
  t.is(evaluator.eval!.scores[(((0 * 101 + 51) * 1 + 0) * 4 + 0) * 3 + 2], 0);
});

test('useCats false matches across categories', (t) => {
  const gt = dataset([1], [gtBox(1, 1, [0, 0, 10, 10])], [1, 2]);
  const results = [detection(1, [0, 0, 10, 10], 0.9, 2)];

  t.is(runEval(gt, results).stats[0], 0);
  const anyCategory = runEval(gt, results, (evaluator) => {
    evaluator.params.useCats = false;
  });
  assertNear(t, anyCategory.stats[0], 1, 'stats[0]');
  t.is(anyCategory.getEvalImgs()[0]!.category_id, -1);
  t.deepEqual(
    anyCategory.perCategory().map((row) => row.categoryId),
    [-1],
  );
});

test('IoU threshold 1 matches identical boxes', (t) => {
  const gt = dataset([1], [gtBox(1, 1, [0.5, 0.5, 10.25, 10.25])]);
  const evaluator = runEval(gt, [detection(1, [0.5, 0.5, 10.25, 10.25], 0.9)], (e) => {
    e.params.iouThrs = [1];
  });
  // pycocotools caps the threshold at 1 - 1e-10, so an exact match still counts.
  t.is(evaluator.eval!.recall[2], 1);
});

test('match to ground-truth id 0 is a false positive', (t) => {
  const gt = dataset([1], [gtBox(0, 1, [0, 0, 10, 10])]);
  const cocoGt = new COCO(gt);
  const warnings: string[] = [];
  const logger = { info: () => undefined, warn: (message: string) => warnings.push(message) };
  const evaluator = new COCOeval(cocoGt, cocoGt.loadRes([detection(1, [0, 0, 10, 10], 0.9)]), 'bbox', { logger });
  evaluator.evaluate();
  evaluator.accumulate();
  const { stats } = evaluator.summarize();

  // pycocotools stores the matched object's id and reads 0 as "unmatched".
  t.is(stats[0], 0);
  t.is(warnings.length, 1);
  t.regex(warnings[0]!, /ground-truth annotation has id 0/);
});

test('summarize before accumulate throws', (t) => {
  const cocoGt = new COCO(dataset([1], [gtBox(1, 1, [0, 0, 10, 10])]));
  const evaluator = new COCOeval(cocoGt, cocoGt.loadRes([]), 'bbox');
  t.throws(() => evaluator.accumulate(), { message: 'COCOeval.accumulate: call evaluate() first' });
  evaluator.evaluate();
  t.throws(() => evaluator.summarize(), { message: 'COCOeval.summarize: call accumulate() first' });
  evaluator.accumulate();
  t.is(evaluator.summarize().stats[0], 0);
});
