import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import {
  boxIof,
  boxIou,
  boxIouTensor,
  boxOverlaps,
  clipBoxes,
  flipBoxesHorizontal,
  xywhToXyxy,
  xyxyToXywh,
  xyxyToYxyx,
  yxyxToXyxy,
} from '../../../src/ops/boxes.ts';
import { describeMismatch, firstMismatch, float32Rows, loadOpsFixture } from './fixture.ts';

interface BoxIouFixture {
  boxes1: number[][];
  boxes2: number[][];
  iou: number[][];
  iou_float32: number[][];
}

const fixture = loadOpsFixture<BoxIouFixture>('box_iou.json');

test.before(async () => {
  await tf.setBackend('cpu');
});

test('boxIou matches torchvision float64', (t) => {
  const iou = boxIou(float32Rows(fixture.boxes1), float32Rows(fixture.boxes2));
  const expected = fixture.iou.flat();
  const index = firstMismatch(iou, expected, 1e-12, 0);
  t.is(index, -1, describeMismatch(iou, expected, index));
});

test('boxIou NaN only for zero-area pairs', (t) => {
  const iou = boxIou(float32Rows(fixture.boxes1), float32Rows(fixture.boxes2));
  const nanCount = [...iou].filter(Number.isNaN).length;
  t.is(nanCount, 6);
  // Row 3 is a point; columns 3 (the same point), 4 (zero height) and 6 (zero width) are degenerate too.
  t.true(Number.isNaN(iou[3 * 15 + 3]!));
  t.true(Number.isNaN(iou[3 * 15 + 4]!));
  t.true(Number.isNaN(iou[3 * 15 + 6]!));
  t.is(iou[3 * 15 + 5], 0);
});

test('boxIou edge cases by hand', (t) => {
  const a = Float32Array.of(0, 0, 10, 10);
  const b = Float32Array.of(10, 0, 20, 10, 10, 10, 20, 20, 0, 0, 10, 10, 5, 0, 15, 10, 2, 2, 4, 4);
  const iou = boxIou(a, b);
  t.is(iou[0], 0, 'edge-touching');
  t.is(iou[1], 0, 'corner-touching');
  t.is(iou[2], 1, 'identical');
  t.is(iou[3], 50 / 150, 'half shifted');
  t.is(iou[4], 4 / 100, 'contained');
});

test('boxIou empty inputs', (t) => {
  t.is(boxIou(new Float32Array(0), Float32Array.of(0, 0, 1, 1)).length, 0);
  t.is(boxIou(Float32Array.of(0, 0, 1, 1), new Float64Array(0)).length, 0);
});

test('boxIou rejects ragged arrays', (t) => {
  const error = t.throws(() => boxIou(Float32Array.of(0, 0, 1), Float32Array.of(0, 0, 1, 1)));
  t.regex(error!.message, /boxes1: expected a flat \[N, 4\] array, got length 3/);
});

test('boxOverlaps eps turns NaN into 0', (t) => {
  const point = Float32Array.of(3, 3, 3, 3);
  t.true(Number.isNaN(boxOverlaps(point, point)[0]!));
  t.is(boxOverlaps(point, point, { eps: 1e-6 })[0], 0);
});

test('boxIof divides by first box area', (t) => {
  const anchors = Float32Array.of(0, 0, 10, 10, 0, 0, 0, 10);
  const ignore = Float32Array.of(5, 0, 100, 100);
  const iof = boxIof(anchors, ignore);
  t.is(iof[0], 0.5);
  t.is(iof[1], 0, 'a zero-area box gives 0, not NaN');
  // The reverse direction divides by the big region's area.
  t.is(boxIof(ignore, anchors)[0], 50 / (95 * 100));
});

test('boxIouTensor matches float32 fixture', (t) => {
  const before = tf.memory().numTensors;
  const a = tf.tensor2d(fixture.boxes1);
  const b = tf.tensor2d(fixture.boxes2);
  const iou = boxIouTensor(a, b);
  t.deepEqual(iou.shape, [20, 15]);
  const values = iou.dataSync();
  const expected = fixture.iou_float32.flat();
  const index = firstMismatch(values, expected, 1e-6, 1e-6);
  t.is(index, -1, describeMismatch(values, expected, index));
  tf.dispose([a, b, iou]);
  t.is(tf.memory().numTensors, before);
});

test('conversions round-trip', (t) => {
  const xywh = Float32Array.of(10, 20, 30, 40, 0, 0, 0, 0);
  const xyxy = xywhToXyxy(xywh);
  t.deepEqual([...xyxy], [10, 20, 40, 60, 0, 0, 0, 0]);
  t.true(xyxy instanceof Float32Array);
  t.deepEqual([...xyxyToXywh(xyxy)], [...xywh]);
  const yxyx = xyxyToYxyx(Float64Array.of(1, 2, 3, 4));
  t.deepEqual([...yxyx], [2, 1, 4, 3]);
  t.true(yxyx instanceof Float64Array);
  t.deepEqual([...yxyxToXyxy(yxyx)], [1, 2, 3, 4]);
});

test('tensor conversions match arrays', (t) => {
  const before = tf.memory().numTensors;
  const boxes = tf.tensor2d([
    [10, 20, 30, 40],
    [1, 2, 3, 4],
  ]);
  const converted = [xywhToXyxy(boxes), xyxyToXywh(boxes), xyxyToYxyx(boxes), yxyxToXyxy(boxes)];
  t.deepEqual(converted[0]!.arraySync(), [
    [10, 20, 40, 60],
    [1, 2, 4, 6],
  ]);
  t.deepEqual(converted[1]!.arraySync(), [
    [10, 20, 20, 20],
    [1, 2, 2, 2],
  ]);
  t.deepEqual(converted[2]!.arraySync(), [
    [20, 10, 40, 30],
    [2, 1, 4, 3],
  ]);
  t.deepEqual(converted[3]!.arraySync(), converted[2]!.arraySync());
  tf.dispose([boxes, ...converted]);
  t.is(tf.memory().numTensors, before);
});

test('clipBoxes uses width and height, not minus one', (t) => {
  const boxes = Float32Array.of(-5, -1, 120, 90, 10, 10, 20, 20);
  clipBoxes(boxes, [80, 100]);
  t.deepEqual([...boxes], [0, 0, 100, 80, 10, 10, 20, 20]);
});

test('flipBoxesHorizontal mirrors x', (t) => {
  const boxes = Float32Array.of(10, 5, 30, 15);
  flipBoxesHorizontal(boxes, 100);
  t.deepEqual([...boxes], [70, 5, 90, 15]);
  flipBoxesHorizontal(boxes, 100);
  t.deepEqual([...boxes], [10, 5, 30, 15]);
});
