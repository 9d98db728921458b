import test from 'ava';

import { COCO, COCOeval } from '../../../src/coco/index.ts';
import {
  FIXTURES,
  assertPerCategoryClose,
  assertStatsClose,
  comparePrecisionRecallTables,
  evaluateFixture,
  readFixtureJson,
  type Reference,
} from './pycocotools_reference.ts';

function evaluateBoxes(gtFile: string, dtFile: string): COCOeval {
  return evaluateFixture(gtFile, dtFile, 'bbox');
}

const cases = [
  { name: 'dev40', gt: 'dev40_gt.json', dt: 'dev40_dt_bbox.json', ref: 'dev40_ref_bbox.json', categoriesWithoutGt: 30 },
  { name: 'dev400', gt: 'dev400_gt.json.gz', dt: 'dev400_dt_bbox.json.gz', ref: 'dev400_ref_bbox.json', categoriesWithoutGt: 0 },
];

for (const fixture of cases) {
  test(`${fixture.name} bbox stats equal pycocotools`, (t) => {
    const evaluator = evaluateBoxes(fixture.gt, fixture.dt);
    const reference = readFixtureJson<Reference>(fixture.ref);
    t.is(evaluator.stats.length, 12);
    assertStatsClose(t, evaluator.stats, reference.stats);
  });

  test(`${fixture.name} per-category AP equals pycocotools`, (t) => {
    const evaluator = evaluateBoxes(fixture.gt, fixture.dt);
    const reference = readFixtureJson<Reference>(fixture.ref);
    assertPerCategoryClose(t, evaluator, reference);
    const perCategory = evaluator.perCategory();
    t.is(perCategory.filter((row) => row.ap === -1).length, fixture.categoriesWithoutGt);
    for (const row of perCategory) t.is(row.maxDets, 100, `category ${row.categoryId}`);
  });
}

test('dev40 precision and recall tables equal pycocotools', (t) => {
  const evaluator = evaluateBoxes('dev40_gt.json', 'dev40_dt_bbox.json');
  const reference = readFixtureJson<Reference>('dev40_ref_bbox.json');
  t.deepEqual(evaluator.eval!.counts, [10, 101, 80, 4, 3]);
  const checked = comparePrecisionRecallTables(t, evaluator, reference);
  t.is(checked, 10 * 80 * 4 * 3);
});

test('detectron2 image 139 bbox stats', (t) => {
  const evaluator = evaluateBoxes('detectron2_139/gt.json', 'detectron2_139/dt.json');
  const expected = readFixtureJson<{ bbox: number[] }>('detectron2_139/expected_stats.json').bbox;
  t.is(evaluator.stats.length, 12);
  assertStatsClose(t, evaluator.stats, expected);
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
