import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

import test from 'ava';

import { evaluateDetections, toCocoResults } from '../../../src/apis/evaluation.ts';
import { COCO, type CocoBboxResult, type CocoRle } from '../../../src/coco/index.ts';
import { DataError } from '../../../src/utils/errors.ts';

const FIXTURES = new URL('../../fixtures/coco/', import.meta.url).pathname;
const TOLERANCE = 1e-12;

function readReference(name: string): { stats: number[] } {
  return JSON.parse(readFileSync(FIXTURES + name, 'utf8')) as { stats: number[] };
}

/** dev40's box and mask results are the same detections in the same order; joined they are what a mask model outputs. */
function joinedResults(): CocoBboxResult[] {
  const boxes = JSON.parse(readFileSync(FIXTURES + 'dev40_dt_bbox.json', 'utf8')) as CocoBboxResult[];
  const masks = JSON.parse(gunzipSync(readFileSync(FIXTURES + 'dev40_dt_segm.json.gz')).toString('utf8')) as Array<{ segmentation: CocoRle }>;
  return boxes.map((result, i) => ({ ...result, segmentation: masks[i]!.segmentation }));
}

test('box results give only bbox metrics', (t) => {
  const gt = new COCO(FIXTURES + 'dev40_gt.json');
  const boxes = JSON.parse(readFileSync(FIXTURES + 'dev40_dt_bbox.json', 'utf8')) as CocoBboxResult[];
  const evaluation = evaluateDetections(gt, boxes);
  t.is(evaluation.segm, undefined);
  t.deepEqual(Object.keys(evaluation.metrics).filter((name) => name.startsWith('segm_')), []);
  t.true(Math.abs(evaluation.metrics['bbox_mAP']! - readReference('dev40_ref_bbox.json').stats[0]!) < TOLERANCE);
});

test('mask results add segm metrics', (t) => {
  const gt = new COCO(FIXTURES + 'dev40_gt.json');
  const evaluation = evaluateDetections(gt, joinedResults());
  const bboxReference = readReference('dev40_ref_bbox.json').stats;
  const segmReference = readReference('dev40_ref_segm.json').stats;
  evaluation.stats.forEach((value, i) => t.true(Math.abs(value - bboxReference[i]!) < TOLERANCE, `bbox stats[${i}]`));
  // The mask evaluation drops the boxes, so small/medium/large use mask areas as in the segm fixture.
  evaluation.segm!.stats.forEach((value, i) => t.true(Math.abs(value - segmReference[i]!) < TOLERANCE, `segm stats[${i}]`));
  t.is(evaluation.metrics['segm_mAP'], evaluation.segm!.stats[0]);
  t.is(evaluation.metrics['segm_mAP_l'], evaluation.segm!.stats[5]);
  t.is(evaluation.metrics['bbox_mAP'], evaluation.stats[0]);
  t.true(evaluation.table.startsWith('bbox:\n Average Precision'));
  t.true(evaluation.table.includes('\nsegm:\n Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.332'));
});

test('partial masks are rejected', (t) => {
  const gt = new COCO(FIXTURES + 'dev40_gt.json');
  const results = joinedResults();
  delete results[5]!.segmentation;
  t.throws(() => evaluateDetections(gt, results), {
    instanceOf: DataError,
    message: '3855 of 3856 results have a segmentation; mask evaluation needs one for every result',
  });
});

test('toCocoResults attaches masks', (t) => {
  const masks: CocoRle[] = [
    { size: [4, 4], counts: '05<' },
    { size: [4, 4], counts: 'g0' },
  ];
  const detections = {
    boxes: Float32Array.of(1, 2, 3, 5, 0, 0, 4, 4),
    scores: Float32Array.of(0.5, 0.25),
    labels: Int32Array.of(0, 2),
    masks,
  };
  const results = toCocoResults([{ imageId: 7, detections }], (label) => label + 10);
  t.deepEqual(results, [
    { image_id: 7, category_id: 10, bbox: [1, 2, 2, 3], score: 0.5, segmentation: masks[0] },
    { image_id: 7, category_id: 12, bbox: [0, 0, 4, 4], score: 0.25, segmentation: masks[1] },
  ]);
  t.throws(() => toCocoResults([{ imageId: 7, detections: { ...detections, masks: [masks[0]!] } }], (label) => label), {
    instanceOf: DataError,
    message: 'image 7: 1 masks for 2 detections; expected one mask per detection',
  });
});
