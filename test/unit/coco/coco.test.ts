import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import test from 'ava';

import { COCO, type CocoDataset } from '../../../src/coco/index.ts';
import { DataError } from '../../../src/utils/errors.ts';

const FIXTURES = new URL('../../fixtures/coco/', import.meta.url).pathname;

function sampleDataset(): CocoDataset {
  return {
    images: [
      { id: 10, width: 100, height: 100 },
      { id: 20, width: 100, height: 100 },
      { id: 30, width: 100, height: 100 },
    ],
    categories: [
      { id: 1, name: 'person', supercategory: 'human' },
      { id: 2, name: 'dog', supercategory: 'animal' },
      { id: 3, name: 'cat', supercategory: 'animal' },
    ],
    annotations: [
      { id: 101, image_id: 20, category_id: 2, bbox: [0, 0, 10, 10], area: 100, iscrowd: 0 },
      { id: 102, image_id: 10, category_id: 1, bbox: [0, 0, 20, 20], area: 400, iscrowd: 0 },
      { id: 103, image_id: 20, category_id: 1, bbox: [0, 0, 40, 40], area: 1600, iscrowd: 1 },
      { id: 104, image_id: 10, category_id: 2, bbox: [0, 0, 5, 5], area: 25 },
    ],
  };
}

test('createIndex builds lookups in file order', (t) => {
  const coco = new COCO(sampleDataset());
  t.deepEqual(
    coco.imgToAnns.get(20)!.map((a) => a.id),
    [101, 103],
  );
  t.deepEqual(coco.catToImgs.get(1), [10, 20]);
  t.deepEqual(coco.catToImgs.get(2), [20, 10]);
  t.is(coco.anns.get(104)!.area, 25);
  t.is(coco.imgs.size, 3);
  t.is(coco.cats.get(3)!.name, 'cat');
});

test('getAnnIds applies each filter', (t) => {
  const coco = new COCO(sampleDataset());
  t.deepEqual(coco.getAnnIds(), [101, 102, 103, 104]);
  t.deepEqual(coco.getAnnIds({ imgIds: [10, 20] }), [102, 104, 101, 103]);
  t.deepEqual(coco.getAnnIds({ imgIds: 20 }), [101, 103]);
  t.deepEqual(coco.getAnnIds({ catIds: [2] }), [101, 104]);
  t.deepEqual(coco.getAnnIds({ imgIds: [10], catIds: 1 }), [102]);
  // Area bounds are exclusive, as in pycocotools' getAnnIds.
  t.deepEqual(coco.getAnnIds({ areaRng: [25, 1600] }), [101, 102]);
  t.deepEqual(coco.getAnnIds({ iscrowd: true }), [103]);
  t.deepEqual(coco.getAnnIds({ iscrowd: 0 }), [101, 102, 104]);
  t.deepEqual(coco.getAnnIds({ imgIds: [99] }), []);
});

test('getCatIds filters names and supercategories', (t) => {
  const coco = new COCO(sampleDataset());
  t.deepEqual(coco.getCatIds(), [1, 2, 3]);
  t.deepEqual(coco.getCatIds({ catNms: ['cat', 'person'] }), [1, 3]);
  t.deepEqual(coco.getCatIds({ supNms: 'animal' }), [2, 3]);
  t.deepEqual(coco.getCatIds({ supNms: ['animal'], catIds: [3, 1] }), [3]);
});

test('getImgIds intersects categories', (t) => {
  const coco = new COCO(sampleDataset());
  t.deepEqual(coco.getImgIds(), [10, 20, 30]);
  t.deepEqual(coco.getImgIds({ catIds: [1] }), [10, 20]);
  t.deepEqual(coco.getImgIds({ catIds: [1, 2] }), [10, 20]);
  t.deepEqual(coco.getImgIds({ imgIds: [20, 30], catIds: [2] }), [20]);
  t.deepEqual(coco.getImgIds({ catIds: [3] }), []);
});

test('load functions return records by id', (t) => {
  const coco = new COCO(sampleDataset());
  t.deepEqual(
    coco.loadAnns([104, 101]).map((a) => a.id),
    [104, 101],
  );
  t.is(coco.loadCats(2)[0]!.name, 'dog');
  t.is(coco.loadImgs([30])[0]!.id, 30);
  t.throws(() => coco.loadImgs(99), { instanceOf: DataError, message: 'dataset: image id 99 not found' });
});

test('loads plain and gzipped files alike', (t) => {
  const directory = mkdtempSync(join(tmpdir(), 'rladet-coco-'));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  const text = JSON.stringify(sampleDataset());
  writeFileSync(join(directory, 'gt.json'), text);
  writeFileSync(join(directory, 'gt.json.gz'), gzipSync(text));

  const plain = new COCO(join(directory, 'gt.json'));
  const gzipped = COCO.fromFile(join(directory, 'gt.json.gz'));
  t.deepEqual(gzipped.dataset, plain.dataset);
  t.is(gzipped.anns.size, 4);
  t.is(gzipped.source, join(directory, 'gt.json.gz'));
});

test('fixture with gzip loads all records', (t) => {
  const coco = new COCO(FIXTURES + 'dev400_gt.json.gz');
  t.is(coco.imgs.size, 400);
  t.is(coco.anns.size, 2949);
  t.is(coco.cats.size, 80);
  t.is(coco.getAnnIds({ iscrowd: 1 }).length, 35);
});

test('annotation with unknown image id is rejected', (t) => {
  const dataset = sampleDataset();
  dataset.annotations![1]!.image_id = 40;
  t.throws(() => new COCO(dataset, { source: 'gt.json' }), {
    instanceOf: DataError,
    message: "gt.json: annotations[1] (id 102).image_id: 40 is not an image id in 'images'",
  });
});

test('annotation with unknown category id is rejected', (t) => {
  const dataset = sampleDataset();
  dataset.annotations![3]!.category_id = 9;
  t.throws(() => new COCO(dataset, { source: 'gt.json' }), {
    instanceOf: DataError,
    message: "gt.json: annotations[3] (id 104).category_id: 9 is not a category id in 'categories'",
  });
});

test('invalid ground-truth box is rejected', (t) => {
  const cases: Array<[unknown, string]> = [
    [[1, 2, -3, 4], '[1, 2, -3, 4]'],
    [[1, 2, 3, -4], '[1, 2, 3, -4]'],
    [[1, 2, 3], '[1, 2, 3]'],
    [[1, 2, 3, '4'], '[1, 2, 3, "4"]'],
    [null, 'null'],
  ];
  for (const [bbox, shown] of cases) {
    const dataset = sampleDataset();
    (dataset.annotations![2] as unknown as Record<string, unknown>)['bbox'] = bbox;
    t.throws(() => new COCO(dataset, { source: 'gt.json' }), {
      instanceOf: DataError,
      message: `gt.json: annotations[2] (id 103).bbox: expected 4 finite numbers [x, y, width, height] with width and height >= 0, found ${shown}`,
    });
  }
});

test('zero-size and missing boxes load', (t) => {
  const dataset = sampleDataset();
  dataset.annotations![0]!.bbox = [5, 5, 0, 0];
  delete dataset.annotations![1]!.bbox;
  t.is(new COCO(dataset).anns.size, 4);
});

test('missing lists skip reference checks', (t) => {
  const { annotations } = sampleDataset();
  const coco = new COCO({ annotations });
  t.deepEqual(coco.getAnnIds({ imgIds: 20 }), [101, 103]);
});

test('invalid JSON names the file', (t) => {
  const directory = mkdtempSync(join(tmpdir(), 'rladet-coco-'));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  const path = join(directory, 'broken.json');
  writeFileSync(path, '{"images": [');
  const error = t.throws(() => new COCO(path), { instanceOf: DataError });
  t.true(error!.message.startsWith(`${path}: invalid JSON: `), error!.message);
});

test('dataset records need numeric ids', (t) => {
  t.throws(() => new COCO([] as unknown as CocoDataset), {
    instanceOf: DataError,
    message: 'dataset: expected a COCO dataset object, found []',
  });
  const badAnnotation = sampleDataset();
  (badAnnotation.annotations![2] as unknown as Record<string, unknown>)['image_id'] = '20';
  t.throws(() => new COCO(badAnnotation, { source: 'gt.json' }), {
    instanceOf: DataError,
    message: 'gt.json: annotations[2].image_id: expected a number, found "20"',
  });
  const badImages = { images: { id: 1 } } as unknown as CocoDataset;
  t.throws(() => new COCO(badImages), {
    instanceOf: DataError,
    message: `dataset: 'images' must be an array, found {"id":1}`,
  });
  const missingId = { categories: [{ name: 'person' }] } as unknown as CocoDataset;
  t.throws(() => new COCO(missingId), {
    instanceOf: DataError,
    message: 'dataset: categories[0].id: expected a number, found nothing (the field is missing)',
  });
});
