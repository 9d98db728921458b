import { readFileSync } from 'node:fs';

import test from 'ava';

import { COCO, COCOeval } from '../../../src/coco/index.ts';

const FIXTURES = new URL('../../fixtures/coco/', import.meta.url).pathname;
const TOLERANCE = 1e-12;

interface Reference {
  stats: number[];
  per_category: Array<{ category_id: number; AP: number; AP50: number; AP75: number; AR100: number }>;
  ap_tkam?: number[][][][];
  recall_tkam?: number[][][][];
}

function readReference(name: string): Reference {
  return JSON.parse(readFileSync(FIXTURES + name, 'utf8')) as Reference;
}

function evaluateBoxes(gtFile: string, dtFile: string): COCOeval {
  const gt = new COCO(FIXTURES + gtFile);
  const evaluator = new COCOeval(gt, gt.loadRes(FIXTURES + dtFile), 'bbox');
  evaluator.evaluate();
  evaluator.accumulate();
  evaluator.summarize();
  return evaluator;
}

const cases = [
  { name: 'dev40', gt: 'dev40_gt.json', dt: 'dev40_dt_bbox.json', ref: 'dev40_ref_bbox.json', categoriesWithoutGt: 30 },
  { name: 'dev400', gt: 'dev400_gt.json.gz', dt: 'dev400_dt_bbox.json.gz', ref: 'dev400_ref_bbox.json', categoriesWithoutGt: 0 },
];

for (const fixture of cases) {
  test(`${fixture.name} bbox stats equal pycocotools`, (t) => {
    const evaluator = evaluateBoxes(fixture.gt, fixture.dt);
    const reference = readReference(fixture.ref);
    t.is(evaluator.stats.length, 12);
    evaluator.stats.forEach((value, index) => {
      t.true(Math.abs(value - reference.stats[index]!) < TOLERANCE, `stats[${index}]: ${value} != ${reference.stats[index]}`);
    });
  });

  test(`${fixture.name} per-category AP equals pycocotools`, (t) => {
    const evaluator = evaluateBoxes(fixture.gt, fixture.dt);
    const reference = readReference(fixture.ref);
    const perCategory = evaluator.perCategory();
    t.deepEqual(
      perCategory.map((row) => row.categoryId),
      reference.per_category.map((row) => row.category_id),
    );
    t.is(perCategory.filter((row) => row.ap === -1).length, fixture.categoriesWithoutGt);
    perCategory.forEach((row, k) => {
      const expected = reference.per_category[k]!;
      const pairs: Array<[string, number, number]> = [
        ['AP', row.ap, expected.AP],
        ['AP50', row.ap50, expected.AP50],
        ['AP75', row.ap75, expected.AP75],
        ['AR100', row.ar, expected.AR100],
      ];
      for (const [metric, actual, expectedValue] of pairs) {
        t.true(
          Math.abs(actual - expectedValue) < TOLERANCE,
          `category ${row.categoryId} ${metric}: ${actual} != ${expectedValue}`,
        );
      }
      t.is(row.maxDets, 100);
    });
  });
}

test('dev40 precision and recall tables equal pycocotools', (t) => {
  const evaluator = evaluateBoxes('dev40_gt.json', 'dev40_dt_bbox.json');
  const reference = readReference('dev40_ref_bbox.json');
  const evaluation = evaluator.eval!;
  const [T, R, K, A, M] = evaluation.counts;
  t.deepEqual(evaluation.counts, [10, 101, 80, 4, 3]);

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
  t.is(checked, 10 * 80 * 4 * 3);
});

test('detectron2 image 139 bbox stats', (t) => {
  const gt = new COCO(FIXTURES + 'detectron2_139/gt.json');
  const evaluator = new COCOeval(gt, gt.loadRes(FIXTURES + 'detectron2_139/dt.json'), 'bbox');
  evaluator.evaluate();
  evaluator.accumulate();
  const { stats } = evaluator.summarize();
  const expected = (JSON.parse(readFileSync(FIXTURES + 'detectron2_139/expected_stats.json', 'utf8')) as { bbox: number[] }).bbox;
  t.is(stats.length, 12);
  stats.forEach((value, index) => {
    t.true(Math.abs(value - expected[index]!) < TOLERANCE, `stats[${index}]: ${value} != ${expected[index]}`);
  });
});

test('summary text matches pycocotools lines', (t) => {
  const evaluator = evaluateBoxes('dev40_gt.json', 'dev40_dt_bbox.json');
  const lines = evaluator.summarize().text.split('\n');
  t.deepEqual(lines, [
    ' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.364',
    ' Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.562',
    ' Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 0.362',
    ' Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.265',
    ' Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.464',
    ' Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.453',
    ' Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.321',
    ' Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ] = 0.414',
    ' Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.416',
    ' Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.287',
    ' Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.503',
    ' Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.509',
  ]);
});

test('summary text prints -1.000 without ground truth', (t) => {
  const gt = new COCO(FIXTURES + 'detectron2_139/gt.json');
  const evaluator = new COCOeval(gt, gt.loadRes(FIXTURES + 'detectron2_139/dt.json'), 'bbox');
  evaluator.evaluate();
  evaluator.accumulate();
  const lines = evaluator.summarize().text.split('\n');
  t.is(lines[3], ' Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.700');
  t.is(lines[5], ' Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000');
  t.is(lines[11], ' Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000');
});

test('summarize sends each line to the logger', (t) => {
  const gt = new COCO(FIXTURES + 'detectron2_139/gt.json');
  const infos: string[] = [];
  const logger = { info: (message: string) => infos.push(message), warn: () => undefined };
  const evaluator = new COCOeval(gt, gt.loadRes(FIXTURES + 'detectron2_139/dt.json'), 'bbox', { logger });
  evaluator.evaluate();
  evaluator.accumulate();
  const { text } = evaluator.summarize();
  t.deepEqual(infos.slice(-12), text.split('\n'));
});
