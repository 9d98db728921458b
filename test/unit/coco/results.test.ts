import test from 'ava';

import { COCO, COCOeval, type CocoDataset } from '../../../src/coco/index.ts';
import { ConfigError, DataError } from '../../../src/utils/errors.ts';

function groundTruth(): COCO {
  const dataset: CocoDataset = {
    images: [
      { id: 1, width: 640, height: 480 },
      { id: 2, width: 640, height: 480 },
    ],
    categories: [
      { id: 1, name: 'person', supercategory: 'human' },
      { id: 7, name: 'train', supercategory: 'vehicle' },
    ],
    annotations: [{ id: 5, image_id: 1, category_id: 1, bbox: [10, 20, 30, 40], area: 1200, iscrowd: 0 }],
  };
  return new COCO(dataset, { source: 'gt.json' });
}

test('loadRes numbers results and adds box fields', (t) => {
  const gt = groundTruth();
  const results = [
    { image_id: 2, category_id: 7, bbox: [1.5, 2, 10, 4.25], score: 0.3 },
    { image_id: 1, category_id: 1, bbox: [0, 0, 8, 8], score: 0.9, segmentation: { size: [480, 640], counts: 'abc' } },
  ];
  const res = gt.loadRes(results);

  const [first, second] = res.loadAnns([1, 2]);
  t.is(first!.id, 1);
  t.is(first!.area, 42.5);
  t.is(first!.iscrowd, 0);
  t.deepEqual(first!.segmentation, [[1.5, 2, 1.5, 6.25, 11.5, 6.25, 11.5, 2]]);
  t.is(first!.score, 0.3);
  t.is(second!.id, 2);
  t.deepEqual(second!.segmentation, { size: [480, 640], counts: 'abc' });
  // The input records are left as they were.
  t.false('id' in results[0]!);
  t.false('area' in results[0]!);
});

test('loadRes shares images and copies categories', (t) => {
  const gt = groundTruth();
  const res = gt.loadRes([{ image_id: 1, category_id: 1, bbox: [0, 0, 1, 1], score: 1 }]);
  t.deepEqual(res.getImgIds(), [1, 2]);
  t.is(res.dataset.images![0], gt.dataset.images![0]);
  t.deepEqual(res.dataset.categories, gt.dataset.categories);
  t.not(res.dataset.categories![0], gt.dataset.categories![0]);
  t.deepEqual(res.getAnnIds({ imgIds: 1 }), [1]);
});

test('empty results give zero AP', (t) => {
  const gt = groundTruth();
  const evaluator = new COCOeval(gt, gt.loadRes([]), 'bbox');
  evaluator.evaluate();
  evaluator.accumulate();
  const { stats } = evaluator.summarize();
  t.is(stats[0], 0);
  t.is(stats[8], 0);
});

test('result without score is rejected', (t) => {
  const gt = groundTruth();
  t.throws(
    () =>
      gt.loadRes([
        { image_id: 1, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 },
        { image_id: 1, category_id: 1, bbox: [0, 0, 1, 1] },
      ]),
    { instanceOf: DataError, message: 'results[1].score: expected a finite number, found nothing (the field is missing)' },
  );
});

test('box of wrong length is rejected', (t) => {
  const gt = groundTruth();
  t.throws(() => gt.loadRes([{ image_id: 1, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 }, { image_id: 1, category_id: 1, bbox: [0, 0, 1], score: 0.5 }]), {
    instanceOf: DataError,
    message: 'results[1].bbox: expected 4 finite numbers [x, y, width, height], found [0, 0, 1]',
  });
});

test('NaN box coordinate is rejected', (t) => {
  const gt = groundTruth();
  t.throws(() => gt.loadRes([{ image_id: 2, category_id: 7, bbox: [0, NaN, 1, 1], score: 0.5 }]), {
    instanceOf: DataError,
    message: 'results[0].bbox: expected 4 finite numbers [x, y, width, height], found [0, NaN, 1, 1]',
  });
});

test('unknown image ids are listed', (t) => {
  const gt = groundTruth();
  const results = [
    { image_id: 1, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 },
    { image_id: 42, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 },
    { image_id: 9, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 },
    { image_id: 42, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 },
  ];
  t.throws(() => gt.loadRes(results), {
    instanceOf: DataError,
    message:
      'results: 2 image id(s) of the results are not in the ground truth gt.json: 42, 9 (first at results[1]). ' +
      'Evaluate against the annotation file the detections were made for.',
  });
});

test('unknown category id is rejected', (t) => {
  const gt = groundTruth();
  t.throws(() => gt.loadRes([{ image_id: 1, category_id: 3, bbox: [0, 0, 1, 1], score: 0.5 }]), {
    instanceOf: DataError,
    message: 'results[0].category_id: 3 is not a category id of the ground truth gt.json',
  });
});

test('result box of negative width is kept', (t) => {
  const gt = groundTruth();
  const res = gt.loadRes([{ image_id: 1, category_id: 1, bbox: [10, 20, -3, 4], score: 0.5 }]);
  t.deepEqual(res.loadAnns(1)[0]!.bbox, [10, 20, -3, 4]);
  t.is(res.loadAnns(1)[0]!.area, -12);
});

test('results that are not a list are rejected', (t) => {
  const gt = groundTruth();
  t.throws(() => gt.loadRes({ image_id: 1 } as unknown as unknown[]), {
    instanceOf: DataError,
    message: 'results: expected an array of result objects, found {"image_id":1}',
  });
  t.throws(() => gt.loadRes([{ image_id: 1, category_id: 1, score: 0.5 }]), {
    instanceOf: DataError,
    message:
      `results[0]: expected a result with 'bbox' [x, y, width, height] or 'segmentation' (an RLE), ` +
      'found {"image_id":1,"category_id":1,"score":0.5}',
  });
});

test('mask-only result with invalid counts is rejected', (t) => {
  const gt = groundTruth();
  t.throws(() => gt.loadRes([{ image_id: 1, category_id: 1, segmentation: { size: [480, 640], counts: 'x' }, score: 0.5 }]), {
    instanceOf: DataError,
    message: `results[0].segmentation.counts: compressed RLE counts: character "x" at offset 0 is not in the range '0' to 'o'`,
  });
});

test('unknown iouType lists supported ones', (t) => {
  const gt = groundTruth();
  t.throws(() => new COCOeval(gt, gt.loadRes([]), 'keypoints'), {
    instanceOf: ConfigError,
    message: "iouType 'keypoints' is not supported; supported iouTypes: bbox, segm",
  });
});

test('loadRes needs images and categories', (t) => {
  const withoutImages = new COCO({ categories: [{ id: 1 }], annotations: [] }, { source: 'gt.json' });
  t.throws(() => withoutImages.loadRes([{ image_id: 1, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 }]), {
    instanceOf: DataError,
    message: "gt.json: missing 'images' (a COCO instances file lists its images)",
  });
  const withoutCategories = new COCO({ images: [{ id: 1 }], annotations: [] }, { source: 'gt.json' });
  t.throws(() => withoutCategories.loadRes([{ image_id: 1, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 }]), {
    instanceOf: DataError,
    message: "gt.json: missing 'categories' (a COCO instances file lists its categories)",
  });
});

test('loadRes accepts image-info ground truth', (t) => {
  const imageInfo = new COCO({ images: [{ id: 1 }], categories: [{ id: 1 }] }, { source: 'image_info.json' });
  const res = imageInfo.loadRes([{ image_id: 1, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 }]);
  t.is(res.anns.size, 1);
});

test('COCOeval needs every ground-truth list', (t) => {
  const gt = groundTruth();
  const dt = gt.loadRes([{ image_id: 1, category_id: 1, bbox: [10, 20, 30, 40], score: 0.5 }]);
  const cases: Array<['images' | 'annotations' | 'categories', string]> = [
    ['images', "gt.json: missing 'images' (a COCO instances file lists its images)"],
    ['categories', "gt.json: missing 'categories' (a COCO instances file lists its categories)"],
    [
      'annotations',
      "gt.json: missing 'annotations', so the ground truth has no annotations to evaluate against. Evaluate against " +
        'an instances file, because image-info files such as image_info_test2017.json list no annotations.',
    ],
  ];
  for (const [list, message] of cases) {
    const dataset = { ...gt.dataset };
    delete dataset[list];
    const incomplete = new COCO(dataset, { source: 'gt.json' });
    t.throws(() => new COCOeval(incomplete, dt, 'bbox'), { instanceOf: DataError, message });
  }
});

test('ground truth with empty annotations scores -1', (t) => {
  const gt = new COCO({ ...groundTruth().dataset, annotations: [] }, { source: 'gt.json' });
  const evaluator = new COCOeval(gt, gt.loadRes([{ image_id: 1, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 }]), 'bbox');
  evaluator.evaluate();
  evaluator.accumulate();
  const { stats } = evaluator.summarize();
  t.deepEqual(stats, new Array(12).fill(-1));
});

test('ground truth without area is rejected', (t) => {
  const gt = new COCO(
    {
      images: [{ id: 1 }],
      categories: [{ id: 1 }],
      annotations: [{ id: 3, image_id: 1, category_id: 1, bbox: [0, 0, 2, 2] }],
    },
    { source: 'gt.json' },
  );
  const evaluator = new COCOeval(gt, gt.loadRes([]), 'bbox');
  t.throws(() => evaluator.evaluate(), {
    instanceOf: DataError,
    message: 'gt.json: ground truth annotation 3 (image 1).area: expected a finite number, found nothing (the field is missing)',
  });
});

test('invalid params are rejected', (t) => {
  const gt = groundTruth();
  const evaluator = new COCOeval(gt, gt.loadRes([]), 'bbox');
  evaluator.params.maxDets = [1, 0, 100];
  t.throws(() => evaluator.evaluate(), { instanceOf: ConfigError, message: 'params.maxDets[1]: expected positive integers, found 0' });
  evaluator.params.maxDets = [100];
  evaluator.evaluate();
  evaluator.accumulate();
  t.throws(() => evaluator.summarize(), {
    instanceOf: ConfigError,
    message: 'summarize needs 3 params.maxDets values (such as [1, 10, 100]), found [100]',
  });
});
