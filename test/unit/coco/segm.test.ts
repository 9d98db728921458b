import test from 'ava';

import { COCO, COCOeval, maskUtils, type CocoDataset } from '../../../src/coco/index.ts';
import { DataError } from '../../../src/utils/errors.ts';
import {
  assertPerCategoryClose,
  assertStatsClose,
  comparePrecisionRecallTables,
  evaluateFixture,
  readFixtureJson,
  type Reference,
} from './pycocotools_reference.ts';

function evaluateMasks(gtFile: string, dtFile: string): COCOeval {
  return evaluateFixture(gtFile, dtFile, 'segm');
}

const cases = [
  { name: 'dev40', gt: 'dev40_gt.json', dt: 'dev40_dt_segm.json.gz', ref: 'dev40_ref_segm.json' },
  { name: 'dev400', gt: 'dev400_gt.json.gz', dt: 'dev400_dt_segm.json.gz', ref: 'dev400_ref_segm.json' },
];

for (const fixture of cases) {
  test(`${fixture.name} segm stats and per-category AP equal pycocotools`, (t) => {
    const evaluator = evaluateMasks(fixture.gt, fixture.dt);
    const reference = readFixtureJson<Reference>(fixture.ref);
    t.is(evaluator.stats.length, 12);
    assertStatsClose(t, evaluator.stats, reference.stats);
    assertPerCategoryClose(t, evaluator, reference);
  });
}

test('dev40 segm precision and recall tables equal pycocotools', (t) => {
  const evaluator = evaluateMasks('dev40_gt.json', 'dev40_dt_segm.json.gz');
  const reference = readFixtureJson<Reference>('dev40_ref_segm.json');
  const checked = comparePrecisionRecallTables(t, evaluator, reference);
  t.is(checked, 10 * 80 * 4 * 3);
});

test('detectron2 image 139 segm stats', (t) => {
  // These detections carry both a box and an RLE, so loadRes takes the box branch and the
  // area that selects the area range is the box's, as in pycocotools.
  const evaluator = evaluateMasks('detectron2_139/gt.json', 'detectron2_139/dt.json');
  const expected = readFixtureJson<{ segm: number[] }>('detectron2_139/expected_stats.json').segm;
  assertStatsClose(t, evaluator.stats, expected);
});

/** One 10 x 10 image with a square object [2, 2, 4, 4] and a crowd region of the right half. */
function maskDataset(): CocoDataset {
  return {
    images: [{ id: 1, width: 10, height: 10 }],
    categories: [{ id: 3, name: 'thing' }],
    annotations: [
      { id: 1, image_id: 1, category_id: 3, segmentation: [[2, 2, 6, 2, 6, 6, 2, 6]], area: 16, bbox: [2, 2, 4, 4], iscrowd: 0 },
      // Columns 5..9 full: 50 zeros, then 50 ones.
      { id: 2, image_id: 1, category_id: 3, segmentation: { size: [10, 10], counts: [50, 50] }, area: 50, bbox: [5, 0, 5, 10], iscrowd: 1 },
    ],
  };
}

function squareMask(x: number, y: number, size: number): Uint8Array {
  const data = new Uint8Array(100);
  for (let row = y; row < y + size; row++) data.fill(1, row * 10 + x, row * 10 + x + size);
  return data;
}

test('annToRLE rasterises polygons and compresses counts', (t) => {
  const coco = new COCO(maskDataset());
  const [square, crowd] = coco.loadAnns([1, 2]);
  const rle = coco.annToRLE(square!);
  t.deepEqual(rle, maskUtils.encode({ height: 10, width: 10, data: squareMask(2, 2, 4) }));
  t.is(maskUtils.area(rle), 16);
  t.deepEqual(coco.annToRLE(crowd!), maskUtils.frPyObjects({ size: [10, 10], counts: [50, 50] }, 10, 10));
  const compressed = { ...square!, segmentation: rle };
  t.is(coco.annToRLE(compressed), rle);
  const mask = coco.annToMask(crowd!);
  t.is(mask.data.reduce((sum, value) => sum + value, 0), 50);
  t.is(mask.data[5], 1);
  t.is(mask.data[4], 0);
});

test('loadRes gives mask results area and box', (t) => {
  const coco = new COCO(maskDataset());
  const segmentation = maskUtils.encode({ height: 10, width: 10, data: squareMask(3, 1, 3) });
  const res = coco.loadRes([{ image_id: 1, category_id: 3, segmentation, score: 0.8 }]);
  const [annotation] = res.loadAnns(1);
  t.is(annotation!.area, 9);
  t.deepEqual(annotation!.bbox, [3, 1, 3, 3]);
  t.is(annotation!.iscrowd, 0);
  t.is(annotation!.segmentation, segmentation);
});

test('mask IoU with crowd divides by detection area', (t) => {
  const coco = new COCO(maskDataset());
  // A 4 x 4 square at x 4..7 overlaps the object [2, 6) in 2 columns (8 pixels) and the crowd
  // region (columns 5..9) in 3 columns (12 pixels).
  const segmentation = maskUtils.encode({ height: 10, width: 10, data: squareMask(4, 2, 4) });
  const evaluator = new COCOeval(coco, coco.loadRes([{ image_id: 1, category_id: 3, segmentation, score: 0.9 }]), 'segm');
  evaluator.evaluate();
  const entry = evaluator.getEvalImgs()[0]!;
  t.deepEqual(entry.gtIds, [1, 2]);
  const ious = maskUtils.iou([segmentation], [coco.annToRLE(coco.anns.get(1)!), coco.annToRLE(coco.anns.get(2)!)], [0, 1]);
  t.deepEqual(ious, [[8 / (16 + 16 - 8), 12 / 16]]);
  // IoU 1/3 is below 0.5, so the detection matches only the crowd region (0.75 >= 0.5..0.75).
  t.deepEqual(
    entry.dtMatches.map((row) => row[0]),
    [2, 2, 2, 2, 2, 2, 0, 0, 0, 0],
  );
  t.deepEqual(
    entry.dtIgnore.map((row) => row[0]),
    [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
  );
});

test('mask result of wrong size is rejected', (t) => {
  const coco = new COCO(maskDataset(), { source: 'gt.json' });
  t.throws(() => coco.loadRes([{ image_id: 1, category_id: 3, segmentation: { size: [10, 12], counts: [120] }, score: 0.5 }]), {
    instanceOf: DataError,
    message: "results[0].segmentation.size: [10, 12] differs from image 1's [height, width] [10, 10] in gt.json",
  });
});

test('mask result counts must add up', (t) => {
  const coco = new COCO(maskDataset());
  t.throws(() => coco.loadRes([{ image_id: 1, category_id: 3, segmentation: { size: [10, 10], counts: [50, 40] }, score: 0.5 }]), {
    instanceOf: DataError,
    message: 'results[0].segmentation.counts: RLE counts add up to 90 pixels, but size [10, 10] has 100',
  });
});

test('truncated mask result string is rejected', (t) => {
  const coco = new COCO(maskDataset());
  const segmentation = maskUtils.encode({ height: 10, width: 10, data: squareMask(3, 1, 3) });
  // Counts [31, 3, 7, 3, 7, 3, 46]: the last is stored as 46 - 7 = 39, two characters 'W1'.
  t.is(segmentation.counts, 'o037000W1');
  const results = [
    { image_id: 1, category_id: 3, segmentation, score: 0.5 },
    { image_id: 1, category_id: 3, segmentation: { size: [10, 10], counts: 'o037000W' }, score: 0.5 },
  ];
  t.throws(() => coco.loadRes(results), {
    instanceOf: DataError,
    message:
      'results[1].segmentation.counts: compressed RLE counts are truncated: the string ends inside the count that starts at offset 7',
  });
});

test('garbage mask result string is rejected', (t) => {
  const coco = new COCO(maskDataset());
  t.throws(() => coco.loadRes([{ image_id: 1, category_id: 3, segmentation: { size: [10, 10], counts: '{"x": 1}' }, score: 0.5 }]), {
    instanceOf: DataError,
    message: `results[0].segmentation.counts: compressed RLE counts: character "{" at offset 0 is not in the range '0' to 'o'`,
  });
});

test('polygon mask results are rejected', (t) => {
  const coco = new COCO(maskDataset());
  t.throws(() => coco.loadRes([{ image_id: 1, category_id: 3, segmentation: [[1, 1, 5, 1, 5, 5]], score: 0.5 }]), {
    instanceOf: DataError,
    message:
      'results[0].segmentation: mask results must be RLE objects {size: [height, width], counts}, found polygons ' +
      '(pycocotools reads only RLEs here too); encode the mask with frPyObjects and merge',
  });
});

test('odd polygon in ground truth is rejected at evaluation', (t) => {
  const dataset = maskDataset();
  dataset.annotations![0]!.segmentation = [[2, 2, 6, 2, 6, 6, 2]];
  const coco = new COCO(dataset, { source: 'gt.json' });
  const segmentation = maskUtils.encode({ height: 10, width: 10, data: squareMask(3, 1, 3) });
  const evaluator = new COCOeval(coco, coco.loadRes([{ image_id: 1, category_id: 3, segmentation, score: 0.5 }]), 'segm');
  t.throws(() => evaluator.evaluate(), {
    instanceOf: DataError,
    message:
      'gt.json: ground truth annotation 1 (image 1).segmentation[0]: a polygon needs an even number of coordinates (x, y pairs), found 7',
  });
});

test('NaN polygon coordinate in ground truth is rejected', (t) => {
  const dataset = maskDataset();
  dataset.annotations![0]!.segmentation = [[2, 2, 6, NaN, 6, 6]];
  const coco = new COCO(dataset, { source: 'gt.json' });
  t.throws(() => coco.annToRLE(coco.anns.get(1)!), {
    instanceOf: DataError,
    message: 'gt.json: annotation 1 (image 1).segmentation[0][3]: expected a finite coordinate, found NaN',
  });
});

test('polygons need the image size', (t) => {
  const dataset = maskDataset();
  delete dataset.images![0]!.height;
  const coco = new COCO(dataset, { source: 'gt.json' });
  t.throws(() => coco.annToRLE(coco.anns.get(1)!), {
    instanceOf: DataError,
    message:
      "gt.json: annotation 1 (image 1).segmentation: polygons need the image's height and width as positive integers, " +
      'found height nothing (the field is missing) and width 10',
  });
});
