// The packed COCOeval against the line-by-line reference port on random data, where no
// pycocotools output exists: precision, recall and scores must agree bit for bit.
import { readFileSync } from 'node:fs';

import test, { type ExecutionContext } from 'ava';

import { COCO, COCOeval, getIouComputer, maskUtils, type CocoAnnotation, type CocoDataset, type CocoResult } from '../../../src/coco/index.ts';
import { referenceEvaluate } from '../../../src/coco/reference.ts';
import type { Params } from '../../../src/coco/params.ts';

const FIXTURES = new URL('../../fixtures/coco/', import.meta.url).pathname;

/** Park-Miller generator, so every run uses the same data. */
function generator(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 48271) % 2147483647;
    return state / 2147483647;
  };
}

interface RandomSet {
  gt: CocoDataset;
  results: CocoResult[];
}

const SIZE = 64;

function randomSet(seed: number, masks: boolean): RandomSet {
  const random = generator(seed);
  const pick = (n: number) => Math.floor(random() * n);
  const images = Array.from({ length: 6 }, (_, i) => ({ id: 100 + i * 7, width: SIZE, height: SIZE }));
  const categories = [{ id: 1 }, { id: 4 }, { id: 9 }];
  const annotations: CocoAnnotation[] = [];
  const results: CocoResult[] = [];
  const randomBox = () => {
    const w = 1 + pick(40);
    const h = 1 + pick(40);
    return [pick(SIZE - w), pick(SIZE - h), w, h];
  };
  for (const image of images) {
    const numObjects = pick(6);
    for (let n = 0; n < numObjects; n++) {
      const bbox = randomBox();
      const [x, y, w, h] = bbox as [number, number, number, number];
      const crowd = random() < 0.15 ? 1 : 0;
      const polygon = [x, y, x + w, y, x + w, y + h, x, y + h];
      annotations.push({
        id: annotations.length + 1,
        image_id: image.id,
        category_id: categories[pick(3)]!.id,
        bbox,
        // Areas straddle the small/medium split (32^2) at this scale only with a custom range.
        area: w * h,
        iscrowd: crowd,
        segmentation: crowd ? maskUtils.frPyObjects([bbox], SIZE, SIZE)[0]! : [polygon],
      });
      // Near-copies of objects, so that matches happen at several thresholds.
      for (let copy = pick(3); copy > 0; copy--) {
        const jitter = () => pick(7) - 3;
        const box = [Math.max(0, x + jitter()), Math.max(0, y + jitter()), Math.max(1, w + jitter()), Math.max(1, h + jitter())];
        results.push(makeResult(image.id, random() < 0.8 ? annotations.at(-1)!.category_id : categories[pick(3)]!.id, box));
      }
    }
    for (let n = pick(8); n > 0; n--) results.push(makeResult(image.id, categories[pick(3)]!.id, randomBox()));
  }

  function makeResult(imageId: number, categoryId: number, box: number[]): CocoResult {
    // Scores on a coarse grid, so that ties occur within and across images.
    const score = Math.round(random() * 10) / 10;
    if (!masks) return { image_id: imageId, category_id: categoryId, bbox: box, score };
    const clipped = [box[0]!, box[1]!, Math.min(box[2]!, SIZE - box[0]!), Math.min(box[3]!, SIZE - box[1]!)];
    return { image_id: imageId, category_id: categoryId, segmentation: maskUtils.frPyObjects([clipped], SIZE, SIZE)[0]!, score };
  }

  return { gt: { images, categories, annotations }, results };
}

function assertSameArrays(t: ExecutionContext, actual: Float64Array, expected: Float64Array, label: string): void {
  t.is(actual.length, expected.length, `${label} length`);
  let mismatches = 0;
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      if (mismatches === 0) t.fail(`${label}[${i}]: ${actual[i]} != ${expected[i]}`);
      mismatches++;
    }
  }
  t.is(mismatches, 0, `${label}: mismatching entries`);
}

function compare(t: ExecutionContext, set: RandomSet, iouType: string, configure?: (params: Params) => void): void {
  const gt = new COCO(structuredClone(set.gt));
  const dt = gt.loadRes(set.results);
  const evaluator = new COCOeval(gt, dt, iouType);
  configure?.(evaluator.params);
  evaluator.evaluate();
  const fast = evaluator.accumulate();
  const reference = referenceEvaluate(gt, dt, getIouComputer(iouType), configure);
  t.deepEqual(fast.counts, reference.counts);
  assertSameArrays(t, fast.precision, reference.precision, 'precision');
  assertSameArrays(t, fast.recall, reference.recall, 'recall');
  assertSameArrays(t, fast.scores, reference.scores, 'scores');
}

const settings: Array<[string, ((params: Params) => void) | undefined]> = [
  ['defaults', undefined],
  [
    'small maxDets and area ranges',
    (params) => {
      params.maxDets = [1, 2, 3];
      params.areaRng = [
        [0, 1e10],
        [0, 100],
        [100, 400],
        [400, 1e10],
      ];
    },
  ],
  ['without categories', (params) => (params.useCats = false)],
  [
    'custom thresholds',
    (params) => {
      params.iouThrs = [0.1, 0.5, 0.9];
      params.recThrs = [0, 0.05, 0.3, 0.31, 0.6, 1];
      params.catIds = [9, 1];
      params.imgIds = [107, 100, 128, 999];
    },
  ],
];

for (const iouType of ['bbox', 'segm']) {
  for (const [name, configure] of settings) {
    test(`${iouType} equals reference, ${name}`, (t) => {
      for (let seed = 1; seed <= 12; seed++) compare(t, randomSet(seed * 7919, iouType === 'segm'), iouType, configure);
    });
  }
}

test('dev40 bbox equals reference', (t) => {
  const gt = new COCO(FIXTURES + 'dev40_gt.json');
  const results = JSON.parse(readFileSync(FIXTURES + 'dev40_dt_bbox.json', 'utf8')) as CocoResult[];
  compare(t, { gt: gt.dataset, results }, 'bbox');
});
