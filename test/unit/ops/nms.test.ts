import test from 'ava';

import { batchedNms, nms } from '../../../src/ops/nms.ts';
import { float32Rows, loadOpsFixture } from './fixture.ts';

interface NmsFixture {
  boxes: number[][];
  scores: number[];
  classes: number[];
  results: Array<{ op: 'nms' | 'batched_nms'; iou_threshold: number; dtype: 'float32' | 'float64'; keep: number[] }>;
  special_pairs: Array<{ target_iou: number; kind: string; indices: [number, number]; lower_score_box_kept_by_nms: Record<string, boolean> }>;
}

const fixture = loadOpsFixture<NmsFixture>('nms.json');
const boxes = float32Rows(fixture.boxes);
const scores = Float32Array.from(fixture.scores);
const classes = Int32Array.from(fixture.classes);

for (const result of fixture.results.filter((r) => r.dtype === 'float64')) {
  test(`${result.op} at ${result.iou_threshold} equals torchvision float64`, (t) => {
    const keep =
      result.op === 'nms'
        ? nms(boxes, scores, result.iou_threshold)
        : batchedNms(boxes, scores, classes, result.iou_threshold);
    t.deepEqual([...keep], result.keep);
  });
}

test('float32 and float64 lists differ only at exact 0.3', (t) => {
  // The exact-0.3 pair: float64 IoU 6/20 is not above 0.3, so the lower-score box survives.
  const pair = fixture.special_pairs.find((p) => p.kind === 'exact' && p.target_iou === 0.3)!;
  t.true(pair.lower_score_box_kept_by_nms['float64@0.3']!);
  const keep = [...nms(boxes, scores, 0.3)];
  t.true(keep.includes(pair.indices[1]));
  const float32List = fixture.results.find((r) => r.op === 'nms' && r.dtype === 'float32' && r.iou_threshold === 0.3)!.keep;
  t.deepEqual(
    keep.filter((i) => !float32List.includes(i)),
    [pair.indices[1]],
  );
});

test('special pairs follow fixture flags', (t) => {
  for (const pair of fixture.special_pairs) {
    const [high, low] = pair.indices;
    const pairBoxes = Float32Array.from([...boxes.subarray(4 * high, 4 * high + 4), ...boxes.subarray(4 * low, 4 * low + 4)]);
    const pairScores = Float32Array.of(scores[high]!, scores[low]!);
    for (const threshold of [0.3, 0.5, 0.7]) {
      const kept = nms(pairBoxes, pairScores, threshold).length === 2;
      t.is(kept, pair.lower_score_box_kept_by_nms[`float64@${threshold}`], `pair ${high}/${low} (${pair.kind} ${pair.target_iou}) at ${threshold}`);
    }
  }
});

test('nms equal scores keep lower index', (t) => {
  const two = Float32Array.of(0, 0, 10, 10, 0, 0, 10, 10);
  t.deepEqual([...nms(two, Float32Array.of(0.5, 0.5), 0.5)], [0]);
  t.deepEqual([...nms(two, Float32Array.of(0.4, 0.5), 0.5)], [1]);
});

test('nms IoU equal to threshold survives', (t) => {
  // IoU of [0,0,2,2] and [1,0,3,2] is 2 / 6 = 1/3 in float64 on both sides of the comparison.
  const pair = Float64Array.of(0, 0, 2, 2, 1, 0, 3, 2);
  t.deepEqual([...nms(pair, [0.9, 0.8], 1 / 3)], [0, 1]);
  t.deepEqual([...nms(pair, [0.9, 0.8], 1 / 3 - 1e-12)], [0]);
});

test('nms zero-area boxes never suppress', (t) => {
  const degenerate = Float32Array.of(5, 5, 5, 5, 5, 5, 5, 5, 0, 0, 10, 0);
  t.deepEqual([...nms(degenerate, [0.9, 0.8, 0.7], 0)], [0, 1, 2]);
});

test('nms empty input', (t) => {
  t.deepEqual([...nms(new Float32Array(0), [], 0.5)], []);
  t.deepEqual([...batchedNms(new Float32Array(0), [], [], 0.5)], []);
});

test('batchedNms only suppresses within class', (t) => {
  const same = Float32Array.of(0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10);
  t.deepEqual([...batchedNms(same, [0.7, 0.9, 0.8], [1, 2, 1], 0.5)], [1, 2]);
});

test('nms rejects mismatched lengths and NaN', (t) => {
  t.regex(t.throws(() => nms(Float32Array.of(0, 0, 1, 1), [0.5, 0.4], 0.5))!.message, /1 boxes but 2 scores/);
  t.regex(t.throws(() => nms(Float32Array.of(0, 0, 1, 1), [Number.NaN], 0.5))!.message, /scores\[0\] is NaN/);
  t.regex(t.throws(() => batchedNms(Float32Array.of(0, 0, 1, 1), [0.5], [], 0.5))!.message, /1 boxes but 0 class ids/);
});
