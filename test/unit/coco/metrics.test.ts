import test from 'ava';

import { MMDET_MAX_DETS, cocoStatsToMetrics, formatMapCopypaste } from '../../../src/coco/index.ts';

const STATS = [
  0.36415783845748356, 0.5624871443697413, 0.36192543040339215, 0.2648207539232886, 0.46350907959841814,
  0.45251001129831564, 0.32103028312683485, 0.41394741006120317, 0.4162129621336518, 0.28697937838753385,
  0.5027696078431373, -1,
];

test('MMDetection names with its maxDets', (t) => {
  t.deepEqual(cocoStatsToMetrics(STATS, { prefix: 'bbox', maxDets: MMDET_MAX_DETS }), {
    bbox_mAP: 0.364,
    bbox_mAP_50: 0.562,
    bbox_mAP_75: 0.362,
    bbox_mAP_s: 0.265,
    bbox_mAP_m: 0.464,
    bbox_mAP_l: 0.453,
    'bbox_AR@100': 0.321,
    'bbox_AR@300': 0.414,
    'bbox_AR@1000': 0.416,
    'bbox_AR_s@1000': 0.287,
    'bbox_AR_m@1000': 0.503,
    'bbox_AR_l@1000': -1,
  });
});

test('AR names follow pycocotools maxDets', (t) => {
  const metrics = cocoStatsToMetrics(STATS, { prefix: 'segm', maxDets: [1, 10, 100], decimals: null });
  t.is(metrics['segm_mAP'], STATS[0]);
  t.is(metrics['segm_AR@1'], STATS[6]);
  t.is(metrics['segm_AR@10'], STATS[7]);
  t.is(metrics['segm_AR_s@100'], STATS[9]);
  t.is(Object.keys(metrics).length, 12);
});

test('copypaste string has six AP values', (t) => {
  t.is(formatMapCopypaste(STATS), '0.364 0.562 0.362 0.265 0.464 0.453');
});

test('metric helpers reject wrong lengths', (t) => {
  t.throws(() => cocoStatsToMetrics(STATS.slice(0, 6), { prefix: 'bbox', maxDets: MMDET_MAX_DETS }), {
    message: 'expected the 12 COCO summary stats, found 6 values',
  });
  t.throws(() => cocoStatsToMetrics(STATS, { prefix: 'bbox', maxDets: [100] }), {
    message: 'expected 3 maxDets values, found [100]',
  });
  t.throws(() => formatMapCopypaste([0.5]), { message: 'expected at least the 6 AP stats, found 1 values' });
});
