import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import { DeltaXYWHBBoxCoder } from '../../../src/models/task_modules/delta_xywh_coder.ts';
import { BOX_CODERS } from '../../../src/registry/index.ts';
import { describeMismatch, firstMismatch, float32Rows, loadOpsFixture } from './fixture.ts';

type Four = [number, number, number, number];

interface DeltaFixture {
  max_ratio: number;
  proposals: number[][];
  gt: number[][];
  encode: Array<{ means: Four; stds: Four; deltas: number[][] }>;
  decode: Array<{ means: Four; stds: Four; max_shape: [number, number] | null; num_classes?: number; deltas: number[][]; boxes: number[][] }>;
  docstring_example: { rois: number[][]; deltas: number[][]; max_shape: [number, number]; boxes: number[][] };
}

const fixture = loadOpsFixture<DeltaFixture>('delta_xywh.json');
const proposals = float32Rows(fixture.proposals);
const gt = float32Rows(fixture.gt);

test.before(async () => {
  await tf.setBackend('cpu');
});

fixture.encode.forEach((item, i) => {
  test(`encode case ${i} matches fixture`, (t) => {
    const coder = new DeltaXYWHBBoxCoder({ targetMeans: item.means, targetStds: item.stds });
    const expected = item.deltas.flat();
    const deltas = coder.encode(proposals, gt);
    const index = firstMismatch(deltas, expected, 1e-5, 1e-5);
    t.is(index, -1, describeMismatch(deltas, expected, index));

    const before = tf.memory().numTensors;
    const p = tf.tensor2d(fixture.proposals);
    const g = tf.tensor2d(fixture.gt);
    const tensor = coder.encodeTensor(p, g);
    const values = tensor.dataSync();
    const tensorIndex = firstMismatch(values, expected, 1e-5, 1e-5);
    t.is(tensorIndex, -1, `tensor: ${describeMismatch(values, expected, tensorIndex)}`);
    tf.dispose([p, g, tensor]);
    t.is(tf.memory().numTensors, before);
  });
});

fixture.decode.forEach((item, i) => {
  const label = `decode case ${i} (stds ${item.stds.join('/')}, max_shape ${item.max_shape}, classes ${item.num_classes ?? 1})`;
  test(`${label} matches fixture`, (t) => {
    const coder = new DeltaXYWHBBoxCoder({ targetMeans: item.means, targetStds: item.stds });
    const deltas = float32Rows(item.deltas);
    const expected = item.boxes.flat();
    const boxes = coder.decode(proposals, deltas, item.max_shape);
    const index = firstMismatch(boxes, expected, 1e-5, 1e-5);
    t.is(index, -1, describeMismatch(boxes, expected, index));

    const before = tf.memory().numTensors;
    const p = tf.tensor2d(fixture.proposals);
    const d = tf.tensor2d(item.deltas);
    const tensor = coder.decodeTensor(p, d, item.max_shape);
    t.deepEqual(tensor.shape, [32, item.deltas[0]!.length]);
    const values = tensor.dataSync();
    const tensorIndex = firstMismatch(values, expected, 1e-5, 1e-5);
    t.is(tensorIndex, -1, `tensor: ${describeMismatch(values, expected, tensorIndex)}`);
    tf.dispose([p, d, tensor]);
    t.is(tf.memory().numTensors, before);
  });
});

test('decode clamps dw and dh at log(1000 / 16)', (t) => {
  const coder = new DeltaXYWHBBoxCoder();
  // Row 0 of the fixture deltas has dw = 8 and dh = -9; a unit box grows to exp(4.135...) = 62.5.
  const boxes = coder.decode(Float32Array.of(0, 0, 1, 1), Float32Array.of(0, 0, 8, -9));
  t.true(Math.abs(boxes[2]! - boxes[0]! - 62.5) < 1e-4);
  t.true(Math.abs(boxes[3]! - boxes[1]! - 1 / 62.5) < 1e-6);
  t.true(Math.abs(fixture.max_ratio - Math.log(1000 / 16)) < 1e-15);
});

test('docstring example', (t) => {
  const coder = new DeltaXYWHBBoxCoder();
  const example = fixture.docstring_example;
  const boxes = coder.decode(float32Rows(example.rois), float32Rows(example.deltas), example.max_shape);
  const expected = example.boxes.flat();
  t.is(firstMismatch(boxes, expected, 1e-5, 1e-5), -1);
});

test('encode then decode restores gt', (t) => {
  const coder = new DeltaXYWHBBoxCoder({ targetStds: [0.1, 0.1, 0.2, 0.2] });
  // Only rows whose size ratio stays within the clamp survive a round trip exactly.
  const deltas = coder.encode(proposals, gt);
  const decoded = coder.decode(proposals, deltas);
  let checked = 0;
  for (let i = 0; i < 32; i++) {
    const dw = Math.abs(deltas[4 * i + 2]! * 0.2);
    const dh = Math.abs(deltas[4 * i + 3]! * 0.2);
    if (dw >= fixture.max_ratio || dh >= fixture.max_ratio) continue;
    checked += 1;
    const index = firstMismatch(decoded.subarray(4 * i, 4 * i + 4), gt.subarray(4 * i, 4 * i + 4), 1e-3, 1e-5);
    t.is(index, -1, `row ${i}`);
  }
  t.true(checked > 20);
});

test('addCtrClamp limits shift and growth only', (t) => {
  const coder = new DeltaXYWHBBoxCoder({ addCtrClamp: true, ctrClamp: 32 });
  // A 100-pixel box shifted by 1.0 * 100 = 100 pixels is clamped to 32; dh = -9 is not clamped below.
  const boxes = coder.decode(Float32Array.of(0, 0, 100, 100), Float32Array.of(1, 0, 0, -9));
  t.true(Math.abs((boxes[0]! + boxes[2]!) / 2 - 82) < 1e-4);
  t.true(Math.abs(boxes[3]! - boxes[1]! - 100 * Math.exp(-9)) < 1e-5);
});

test('decode handles no proposals', (t) => {
  const coder = new DeltaXYWHBBoxCoder();
  t.is(coder.decode(new Float32Array(0), new Float32Array(0)).length, 0);
  t.is(coder.encode(new Float32Array(0), new Float32Array(0)).length, 0);
  const p = tf.zeros([0, 4]) as tf.Tensor2D;
  const d = tf.zeros([0, 8]) as tf.Tensor2D;
  const out = coder.decodeTensor(p, d, [10, 10]);
  t.deepEqual(out.shape, [0, 8]);
  tf.dispose([p, d, out]);
});

test('decode rejects mismatched deltas', (t) => {
  const coder = new DeltaXYWHBBoxCoder();
  t.regex(t.throws(() => coder.decode(Float32Array.of(0, 0, 1, 1), new Float32Array(6)))!.message, /deltas of 6 values do not split into \[1, 4 \* K\]/);
  t.regex(t.throws(() => coder.encode(Float32Array.of(0, 0, 1, 1), new Float32Array(8)))!.message, /1 proposals but 2 gt boxes/);
  t.regex(t.throws(() => new DeltaXYWHBBoxCoder({ targetStds: [1, 1, 0, 1] }))!.message, /'targetStds' must be positive/);
});

test('registry builds DeltaXYWHBBoxCoder', (t) => {
  const built = BOX_CODERS.build({ type: 'DeltaXYWHBBoxCoder', targetStds: [0.1, 0.1, 0.2, 0.2] });
  t.true(built instanceof DeltaXYWHBBoxCoder);
});
