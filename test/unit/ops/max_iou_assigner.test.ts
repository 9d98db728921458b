import test from 'ava';

import { MaxIoUAssigner } from '../../../src/models/task_modules/max_iou_assigner.ts';
import { ASSIGNERS } from '../../../src/registry/index.ts';

const retina = () => new MaxIoUAssigner({ posIouThr: 0.5, negIouThr: 0.4, minPosIou: 0 });

test('thresholds split pos, ignore and neg', (t) => {
  const boxes = Float32Array.of(
    0, 0, 10, 10, // IoU 1
    0, 0, 10, 20, // IoU 100 / 200 = 0.5: positive (>= posIouThr)
    0, 0, 10, 25, // IoU 0.4: neither below negIouThr nor positive, so ignored
    0, 0, 10, 30, // IoU 1/3: negative
    50, 50, 60, 60, // IoU 0: negative
  );
  const result = retina().assign({ boxes, gtBoxes: Float32Array.of(0, 0, 10, 10), gtLabels: Int32Array.of(7) });
  t.deepEqual([...result.gtInds], [1, 1, -1, 0, 0]);
  t.deepEqual([...result.labels!], [7, 7, -1, -1, -1]);
  t.deepEqual([...result.maxOverlaps], [1, 0.5, 0.4, 1 / 3, 0]);
  t.is(result.numGts, 1);
});

test('labels null without gt labels', (t) => {
  const result = retina().assign({ boxes: Float32Array.of(0, 0, 10, 10), gtBoxes: Float32Array.of(0, 0, 10, 10) });
  t.is(result.labels, null);
  t.deepEqual([...result.gtInds], [1]);
});

test('IoU tie goes to first gt', (t) => {
  // The anchor has IoU 100 / 150 with both boxes.
  const input = { boxes: Float32Array.of(0, 0, 15, 10), gtBoxes: Float32Array.of(0, 0, 10, 10, 5, 0, 15, 10), gtLabels: Int32Array.of(3, 4) };
  const plain = new MaxIoUAssigner({ posIouThr: 0.5, negIouThr: 0.4, matchLowQuality: false }).assign(input);
  t.deepEqual([...plain.gtInds], [1]);
  t.deepEqual([...plain.labels!], [3]);
  // With low-quality matching both boxes claim it in order, so the later one wins.
  const lowQuality = retina().assign(input);
  t.deepEqual([...lowQuality.gtInds], [2]);
  t.deepEqual([...lowQuality.labels!], [4]);
});

test('low-quality match below posIouThr', (t) => {
  // The small box has IoU 16 / 100 with anchor 0 and 0 with anchor 1.
  const input = { boxes: Float32Array.of(0, 0, 10, 10, 20, 20, 30, 30), gtBoxes: Float32Array.of(0, 0, 4, 4) };
  t.deepEqual([...retina().assign(input).gtInds], [1, 0]);
  const rpnLike = new MaxIoUAssigner({ posIouThr: 0.7, negIouThr: 0.3, minPosIou: 0.3 });
  t.deepEqual([...rpnLike.assign(input).gtInds], [0, 0], 'IoU 0.16 is below minPosIou 0.3');
  const noLowQuality = new MaxIoUAssigner({ posIouThr: 0.5, negIouThr: 0.4, matchLowQuality: false });
  t.deepEqual([...noLowQuality.assign(input).gtInds], [0, 0]);
});

test('gtMaxAssignAll claims every tied anchor', (t) => {
  // Both anchors have IoU 16 / 100 with the box.
  const input = { boxes: Float32Array.of(0, 0, 10, 10, 0, -6, 10, 4), gtBoxes: Float32Array.of(0, 0, 4, 4) };
  t.deepEqual([...retina().assign(input).gtInds], [1, 1]);
  const firstOnly = new MaxIoUAssigner({ posIouThr: 0.5, negIouThr: 0.4, minPosIou: 0, gtMaxAssignAll: false });
  t.deepEqual([...firstOnly.assign(input).gtInds], [1, 0]);
});

test('gt overlapping nothing claims all zero-IoU anchors', (t) => {
  // MMDetection 2.x behaviour with minPosIou 0: the second box's best IoU is 0, so every anchor at
  // IoU 0 with it matches it, even anchor 0, which the first box matched with IoU 1.
  const input = { boxes: Float32Array.of(0, 0, 10, 10, 20, 0, 30, 10, 100, 0, 110, 10), gtBoxes: Float32Array.of(0, 0, 10, 10, 200, 200, 210, 210) };
  t.deepEqual([...retina().assign(input).gtInds], [2, 2, 2]);
});

test('no gt makes every anchor negative', (t) => {
  const result = retina().assign({
    boxes: Float32Array.of(0, 0, 10, 10, 5, 5, 20, 20),
    gtBoxes: new Float32Array(0),
    gtLabels: new Int32Array(0),
    ignoredBoxes: Float32Array.of(0, 0, 100, 100),
  });
  t.deepEqual([...result.gtInds], [0, 0]);
  t.deepEqual([...result.labels!], [-1, -1]);
  t.deepEqual([...result.maxOverlaps], [0, 0]);
});

test('no anchors gives empty result', (t) => {
  const result = retina().assign({ boxes: new Float32Array(0), gtBoxes: Float32Array.of(0, 0, 4, 4), gtLabels: Int32Array.of(1) });
  t.is(result.gtInds.length, 0);
  t.is(result.labels!.length, 0);
  t.is(result.numGts, 1);
});

test('ignore regions by IoF', (t) => {
  const assigner = new MaxIoUAssigner({ posIouThr: 0.5, negIouThr: 0.4, minPosIou: 0, ignoreIofThr: 0.5 });
  const boxes = Float32Array.of(
    500, 500, 510, 510, // the gt's own anchor
    92, 0, 102, 10, // 80% inside the region: ignored
    90, 0, 110, 10, // exactly 50% inside: not above the threshold, stays negative
    300, 0, 310, 10, // outside: negative
  );
  const input = { boxes, gtBoxes: Float32Array.of(500, 500, 510, 510), ignoredBoxes: Float32Array.of(0, 0, 100, 100) };
  const result = assigner.assign(input);
  t.deepEqual([...result.gtInds], [1, -1, 0, 0]);
  t.is(result.maxOverlaps[1], -1);
  // Without the threshold the region has no effect.
  t.deepEqual([...retina().assign(input).gtInds], [1, 0, 0, 0]);
});

test('ignore IoF relative to region', (t) => {
  const assigner = new MaxIoUAssigner({ posIouThr: 0.5, negIouThr: 0.4, ignoreIofThr: 0.5, ignoreWrtCandidates: false });
  // Intersection 80 over the region's area 100 (not the anchor's 400).
  const boxes = Float32Array.of(500, 500, 510, 510, 0, 0, 20, 20, 0, 0, 4, 4);
  const result = assigner.assign({ boxes, gtBoxes: Float32Array.of(500, 500, 510, 510), ignoredBoxes: Float32Array.of(12, 0, 22, 10) });
  t.deepEqual([...result.gtInds], [1, -1, 0]);
});

test('negIouThr range leaves low IoU ignored', (t) => {
  const assigner = new MaxIoUAssigner({ posIouThr: 0.5, negIouThr: [0.1, 0.4], matchLowQuality: false });
  // IoUs 1, 0.2 and 0.
  const boxes = Float32Array.of(0, 0, 10, 10, 0, 0, 10, 50, 40, 40, 50, 50);
  t.deepEqual([...assigner.assign({ boxes, gtBoxes: Float32Array.of(0, 0, 10, 10) }).gtInds], [1, 0, -1]);
});

test('assignWrtOverlaps on a matrix', (t) => {
  // 2 gts x 4 candidates.
  const overlaps = Float64Array.of(0.9, 0.45, 0.1, 0.3, 0.2, 0.6, 0.05, 0.3);
  const result = retina().assignWrtOverlaps(overlaps, 2, 4, Int32Array.of(5, 6));
  // Candidate 1: max 0.6 from gt 1. Candidate 3: 0.3 for both, best of neither gt, stays negative.
  t.deepEqual([...result.gtInds], [1, 2, 0, 0]);
  t.deepEqual([...result.labels!], [5, 6, -1, -1]);
  t.deepEqual([...result.maxOverlaps], [0.9, 0.6, 0.1, 0.3]);
  t.regex(t.throws(() => retina().assignWrtOverlaps(overlaps, 3, 4))!.message, /overlaps has 8 values, expected 3 x 4/);
});

test('option and input errors', (t) => {
  t.regex(t.throws(() => new MaxIoUAssigner({ posIouThr: 0.5, negIouThr: [0.1] as never }))!.message, /'negIouThr' must be a number or \[lo, hi\]/);
  t.regex(t.throws(() => new MaxIoUAssigner({ posIouThr: 0.5, negIouThr: 0.4, posIou: 1 } as never))!.message, /unknown option 'posIou'.*posIouThr/);
  t.regex(
    t.throws(() => retina().assign({ boxes: new Float32Array(4), gtBoxes: new Float32Array(4), gtLabels: new Int32Array(2) }))!.message,
    /1 gt boxes but 2 gt labels/,
  );
});

test('registry builds MaxIoUAssigner', (t) => {
  t.true(ASSIGNERS.build({ type: 'MaxIoUAssigner', posIouThr: 0.5, negIouThr: 0.4 }) instanceof MaxIoUAssigner);
});

test('registry errors name config path', (t) => {
  const error = t.throws(() => ASSIGNERS.build({ type: 'MaxIoUAssigner', posIouThr: '0.5', negIouThr: 0.4 }, 'model.bboxHead.trainCfg.assigner'));
  t.is(error!.message, `model.bboxHead.trainCfg.assigner: 'posIouThr' must be a number, got "0.5"`);
});
