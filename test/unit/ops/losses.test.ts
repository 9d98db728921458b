import { createRequire } from 'node:module';

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import {
  CrossEntropyLoss,
  FocalLoss,
  L1Loss,
  SmoothL1Loss,
  binaryCrossEntropyWithLogits,
  crossEntropy,
  sigmoidFocalLoss,
  weightReduceLoss,
} from '../../../src/models/losses/index.ts';
import { LOSSES } from '../../../src/registry/index.ts';
import { describeMismatch, firstMismatch, loadOpsFixture } from './fixture.ts';

interface LossesFixture {
  sigmoid_focal_loss: {
    logits: number[][];
    targets: number[][];
    soft_targets: number[][];
    none: number[][];
    mean: number;
    sum: number;
    none_soft_targets: number[][];
  };
  binary_cross_entropy_with_logits: {
    none: number[][];
    mean: number;
    sum: number;
    pos_weight: number[];
    none_with_pos_weight: number[][];
    weight: number[][];
    mean_with_weight: number;
    soft_targets_none: number[][];
  };
  cross_entropy: {
    logits: number[][];
    target: number[];
    none: number[];
    mean: number;
    sum: number;
    class_weight: number[];
    none_with_weight: number[];
    mean_with_weight: number;
    label_smoothing: number;
    none_label_smoothing: number[];
    mean_label_smoothing: number;
    log_softmax: number[][];
  };
}

// The Node build of tfjs-core registers no gradients; this file of its ES module build does.
createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients');

const fixture = loadOpsFixture<LossesFixture>('losses.json');
const ATOL = 1e-6;
const RTOL = 1e-5;

test.before(async () => {
  await tf.setBackend('cpu');
});

/** Runs `compute` on fresh input tensors and returns its values, checking that nothing leaks. */
function evaluate(t: { is: (a: unknown, b: unknown, message?: string) => void }, compute: () => tf.Tensor): Float32Array {
  const before = tf.memory().numTensors;
  const result = tf.tidy(compute);
  const values = result.dataSync() as Float32Array;
  result.dispose();
  t.is(tf.memory().numTensors, before, 'tensor count after the call');
  return values;
}

function assertClose(t: { is: (a: unknown, b: unknown, message?: string) => void }, actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  const index = firstMismatch(actual, expected, ATOL, RTOL);
  t.is(index, -1, `${what}: ${describeMismatch(actual, expected, index)}`);
}

const focal = fixture.sigmoid_focal_loss;
const bce = fixture.binary_cross_entropy_with_logits;
const ce = fixture.cross_entropy;

test('sigmoid focal loss matches torchvision', (t) => {
  for (const reduction of ['none', 'mean', 'sum'] as const) {
    const values = evaluate(t, () => sigmoidFocalLoss(tf.tensor2d(focal.logits), tf.tensor2d(focal.targets), { reduction }));
    const expected = reduction === 'none' ? focal.none.flat() : [focal[reduction]];
    assertClose(t, values, expected, reduction);
  }
  const soft = evaluate(t, () => sigmoidFocalLoss(tf.tensor2d(focal.logits), tf.tensor2d(focal.soft_targets)));
  assertClose(t, soft, focal.none_soft_targets.flat(), 'soft targets');
});

test('BCE with logits matches torch', (t) => {
  const logits = () => tf.tensor2d(focal.logits);
  const targets = () => tf.tensor2d(focal.targets);
  assertClose(t, evaluate(t, () => binaryCrossEntropyWithLogits(logits(), targets(), { reduction: 'none' })), bce.none.flat(), 'none');
  assertClose(t, evaluate(t, () => binaryCrossEntropyWithLogits(logits(), targets())), [bce.mean], 'mean');
  assertClose(t, evaluate(t, () => binaryCrossEntropyWithLogits(logits(), targets(), { reduction: 'sum' })), [bce.sum], 'sum');
  assertClose(
    t,
    evaluate(t, () => binaryCrossEntropyWithLogits(logits(), targets(), { reduction: 'none', posWeight: tf.tensor1d(bce.pos_weight) })),
    bce.none_with_pos_weight.flat(),
    'pos_weight',
  );
  assertClose(t, evaluate(t, () => binaryCrossEntropyWithLogits(logits(), targets(), { weight: tf.tensor2d(bce.weight) })), [bce.mean_with_weight], 'weight');
  assertClose(
    t,
    evaluate(t, () => binaryCrossEntropyWithLogits(logits(), tf.tensor2d(focal.soft_targets), { reduction: 'none' })),
    bce.soft_targets_none.flat(),
    'soft targets',
  );
});

test('cross entropy matches torch', (t) => {
  const logits = () => tf.tensor2d(ce.logits);
  const target = Int32Array.from(ce.target);
  assertClose(t, evaluate(t, () => crossEntropy(logits(), target, { reduction: 'none' })), ce.none, 'none');
  assertClose(t, evaluate(t, () => crossEntropy(logits(), target)), [ce.mean], 'mean');
  assertClose(t, evaluate(t, () => crossEntropy(logits(), target, { reduction: 'sum' })), [ce.sum], 'sum');
  assertClose(t, evaluate(t, () => crossEntropy(logits(), target, { reduction: 'none', classWeight: ce.class_weight })), ce.none_with_weight, 'weighted none');
  assertClose(t, evaluate(t, () => crossEntropy(logits(), target, { classWeight: ce.class_weight })), [ce.mean_with_weight], 'weighted mean');
  const smoothing = ce.label_smoothing;
  assertClose(t, evaluate(t, () => crossEntropy(logits(), target, { reduction: 'none', labelSmoothing: smoothing })), ce.none_label_smoothing, 'smoothed none');
  assertClose(t, evaluate(t, () => crossEntropy(logits(), target, { labelSmoothing: smoothing })), [ce.mean_label_smoothing], 'smoothed mean');
  assertClose(t, evaluate(t, () => tf.logSoftmax(logits())), ce.log_softmax.flat(), 'log_softmax');
});

test('cross entropy ignored target is 0', (t) => {
  t.is(ce.target[2], -100);
  const values = evaluate(t, () => crossEntropy(tf.tensor2d(ce.logits), Int32Array.from(ce.target), { reduction: 'none' }));
  t.is(Math.abs(values[2]!), 0);
});

test('cross entropy rejects bad targets', (t) => {
  const logits = tf.zeros([2, 3]) as tf.Tensor2D;
  t.regex(t.throws(() => crossEntropy(logits, Int32Array.of(0, 3)))!.message, /target\[1\] = 3 is not a class in \[0, 3\) nor ignoreIndex -100/);
  t.regex(t.throws(() => crossEntropy(logits, Int32Array.of(0)))!.message, /1 targets for 2 rows/);
  logits.dispose();
});

/** float64 reference of the focal loss of one element. */
function focalReference(x: number, target: number, gamma = 2, alpha = 0.25): number {
  const p = 1 / (1 + Math.exp(-x));
  const bceValue = Math.max(x, 0) - x * target + Math.log1p(Math.exp(-Math.abs(x)));
  const oneMinusPt = p * (1 - target) + (1 - p) * target;
  return (alpha * target + (1 - alpha) * (1 - target)) * oneMinusPt ** gamma * bceValue;
}

test('focal gradient matches finite differences', (t) => {
  const xs = [-6, -2.5, -0.5, 0, 0.25, 1, 3, 7];
  for (const target of [0, 1, 0.3]) {
    for (const gamma of [2, 0, 0.5, 1.5]) {
      const gradient = tf.tidy(() => {
        const grad = tf.grad((x: tf.Tensor) => tf.sum(sigmoidFocalLoss(x, tf.fill([xs.length], target), { gamma })));
        return grad(tf.tensor1d(xs));
      });
      const values = gradient.dataSync();
      gradient.dispose();
      const h = 1e-5;
      const expected = xs.map((x) => (focalReference(x + h, target, gamma) - focalReference(x - h, target, gamma)) / (2 * h));
      const index = firstMismatch(values, expected, 1e-5, 1e-4);
      t.is(index, -1, `target ${target} gamma ${gamma}: ${describeMismatch(values, expected, index)}`);
    }
  }
});

test('gradients finite at extreme logits', (t) => {
  const before = tf.memory().numTensors;
  const logits = tf.tensor2d([[100, -100, 60, -60, 20, -20, 0]]);
  for (const target of [0, 1]) {
    const targets = tf.fill([1, 7], target);
    const focalGrad = tf.grad((x: tf.Tensor) => tf.sum(sigmoidFocalLoss(x, targets)))(logits);
    const bceGrad = tf.grad((x: tf.Tensor) => binaryCrossEntropyWithLogits(x, targets, { reduction: 'sum', posWeight: tf.tensor1d([3]) }))(logits);
    const ceGrad = tf.grad((x: tf.Tensor) => crossEntropy(x as tf.Tensor2D, Int32Array.of(target), { reduction: 'sum' }))(logits);
    for (const [name, grad] of [['focal', focalGrad], ['bce', bceGrad], ['ce', ceGrad]] as const) {
      const values = [...grad.dataSync()];
      t.true(values.every(Number.isFinite), `${name} target ${target}: ${values}`);
    }
    // Where p (1 - p) underflows, d focal / dx is alpha_t * (p - t): 0.75 at x = 60, t = 0 and -0.25 at x = -60, t = 1.
    if (target === 0) t.true(Math.abs(focalGrad.dataSync()[2]! - 0.75) < 1e-6);
    if (target === 1) t.true(Math.abs(focalGrad.dataSync()[3]! + 0.25) < 1e-6);
    tf.dispose([targets, focalGrad, bceGrad, ceGrad]);
  }
  logits.dispose();
  t.is(tf.memory().numTensors, before);
});

test('BCE gradient exact at zero', (t) => {
  // d/dx at x = 0: sigmoid(0) - t without posWeight, (1 - t) - (1 + (w - 1) t) / 2 with it.
  const grads = tf.tidy(() => {
    const x = tf.zeros([3]);
    const targets = tf.tensor1d([0, 1, 0.5]);
    const plain = tf.grad((v: tf.Tensor) => binaryCrossEntropyWithLogits(v, targets, { reduction: 'sum' }))(x);
    const weighted = tf.grad((v: tf.Tensor) => binaryCrossEntropyWithLogits(v, targets, { reduction: 'sum', posWeight: tf.scalar(3) }))(x);
    return [plain.arraySync() as number[], weighted.arraySync() as number[]];
  });
  t.deepEqual(grads[0], [0.5, -0.5, 0]);
  t.deepEqual(grads[1], [0.5, -1.5, -0.5]);
});

test('weightReduceLoss avgFactor semantics', (t) => {
  const loss = tf.tensor1d([1, 2, 3, 4]);
  const weight = tf.tensor1d([1, 0, 1, 0.5]);
  const value = (r: tf.Tensor) => {
    const v = r.dataSync()[0]!;
    r.dispose();
    return v;
  };
  t.is(value(weightReduceLoss(loss, weight, 'sum')), 6);
  t.true(Math.abs(value(weightReduceLoss(loss, weight, 'mean')) - 1.5) < 1e-7);
  // sum / (avgFactor + float32 eps), as MMDetection 2.x.
  t.true(Math.abs(value(weightReduceLoss(loss, weight, 'mean', 2)) - 6 / (2 + 1.1920928955078125e-7)) < 1e-6);
  const none = weightReduceLoss(loss, weight, 'none', 2);
  t.deepEqual([...none.dataSync()], [1, 0, 3, 2]);
  none.dispose();
  t.regex(t.throws(() => weightReduceLoss(loss, weight, 'sum', 2))!.message, /avgFactor cannot be used with reduction "sum"/);
  tf.dispose([loss, weight]);
});

test('FocalLoss labels equal one-hot targets', (t) => {
  const loss = new FocalLoss({ lossWeight: 2 });
  const logits = tf.tensor2d(focal.logits.slice(0, 4));
  // Labels 1, 4, background (5) and 0; row weights [1, 0.5, 1, 0].
  const labels = tf.tensor1d([1, 4, 5, 0], 'int32');
  const oneHot = tf.tensor2d([
    [0, 1, 0, 0, 0],
    [0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0],
    [1, 0, 0, 0, 0],
  ]);
  const weight = tf.tensor1d([1, 0.5, 1, 0]);
  const fromLabels = loss.forward(logits, labels, { weight, avgFactor: 3 });
  const elementwise = sigmoidFocalLoss(logits, oneHot);
  const expected = tf.tidy(() => tf.div(tf.mul(tf.sum(tf.mul(elementwise, tf.reshape(weight, [4, 1]))), 2), 3 + 1.1920928955078125e-7));
  t.true(Math.abs(fromLabels.dataSync()[0]! - expected.dataSync()[0]!) < 1e-5);
  const fromOneHot = loss.forward(logits, oneHot, { weight, avgFactor: 3 });
  // Integer labels take the summed hard-label path, one-hot targets the element-wise one: the
  // two sum in different orders, so they agree to float32 rounding.
  t.true(Math.abs(fromOneHot.dataSync()[0]! - fromLabels.dataSync()[0]!) <= 1e-6 * Math.abs(fromLabels.dataSync()[0]!));
  tf.dispose([logits, labels, oneHot, weight, fromLabels, elementwise, expected, fromOneHot]);
});

test('CrossEntropyLoss softmax mean uses all rows', (t) => {
  const logits = tf.tensor2d(ce.logits);
  const target = tf.tensor1d(ce.target, 'int32');
  const perElement = crossEntropy(logits, Int32Array.from(ce.target), { reduction: 'none', classWeight: ce.class_weight });
  const sum = tf.sum(perElement).dataSync()[0]!;
  // MMDetection divides by all 16 rows (the ignored one included), and the class weights stay out of the denominator.
  const mmdetMean = new CrossEntropyLoss({ classWeight: ce.class_weight }).forward(logits, target);
  t.true(Math.abs(mmdetMean.dataSync()[0]! - sum / 16) < 1e-4);
  const nonIgnored = new CrossEntropyLoss({ classWeight: ce.class_weight, avgNonIgnore: true }).forward(logits, target);
  t.true(Math.abs(nonIgnored.dataSync()[0]! - sum / (15 + 1.1920928955078125e-7)) < 1e-4);
  tf.dispose([logits, target, perElement, mmdetMean, nonIgnored]);
});

test('CrossEntropyLoss sigmoid expands labels', (t) => {
  // RPN style: one class, label 0 is foreground, label 1 (= numClasses) background, -100 ignored.
  const logits = tf.tensor2d([[2], [-1], [0.5]]);
  const labels = tf.tensor1d([0, 1, -100], 'int32');
  const loss = new CrossEntropyLoss({ useSigmoid: true, reduction: 'sum' }).forward(logits, labels);
  const expected = Math.log1p(Math.exp(-2)) + Math.log1p(Math.exp(-1));
  t.true(Math.abs(loss.dataSync()[0]! - expected) < 1e-6);
  const averaged = new CrossEntropyLoss({ useSigmoid: true, avgNonIgnore: true }).forward(logits, labels);
  t.true(Math.abs(averaged.dataSync()[0]! - expected / 2) < 1e-6);
  tf.dispose([logits, labels, loss, averaged]);
});

test('L1 and smooth L1 by hand', (t) => {
  const pred = tf.tensor2d([[0, 1, 2, 3]]);
  const target = tf.tensor2d([[0.5, 1, 0, 6]]);
  const l1 = new L1Loss({ reduction: 'sum' }).forward(pred, target);
  t.is(l1.dataSync()[0], 5.5);
  // beta 1: 0.5 * 0.25, 0, 2 - 0.5, 3 - 0.5.
  const smooth = new SmoothL1Loss({ beta: 1, reduction: 'none' }).forward(pred, target);
  t.deepEqual([...smooth.dataSync()], [0.125, 0, 1.5, 2.5]);
  const weighted = new L1Loss({ lossWeight: 2 }).forward(pred, target, { weight: tf.tensor2d([[1, 1, 0, 0]]), avgFactor: 1 });
  t.true(Math.abs(weighted.dataSync()[0]! - 1) < 1e-6);
  tf.dispose([pred, target, l1, smooth, weighted]);
});

test('L1 on empty input is zero', (t) => {
  const pred = tf.zeros([0, 4]);
  const target = tf.zeros([0, 4]);
  const value = new L1Loss().forward(pred, target, { avgFactor: 1 });
  t.is(value.dataSync()[0], 0);
  const mean = new L1Loss().forward(pred, target);
  t.is(mean.dataSync()[0], 0);
  tf.dispose([pred, target, value, mean]);
});

test('loss option errors', (t) => {
  t.regex(t.throws(() => LOSSES.build({ type: 'FocalLoss', gama: 2 }, 'model.bboxHead.lossCls'))!.message, /^model\.bboxHead\.lossCls: unknown option 'gama' \(did you mean 'gamma'\?\)/);
  t.regex(t.throws(() => new FocalLoss({ useSigmoid: false }))!.message, /only the sigmoid focal loss exists/);
  t.regex(t.throws(() => new SmoothL1Loss({ beta: 0 }))!.message, /'beta' must be > 0/);
  t.regex(t.throws(() => new L1Loss({ reduction: 'avg' as never }))!.message, /'reduction' must be one of none, mean, sum/);
  const pred = tf.zeros([2, 4]);
  const target = tf.zeros([2, 3]);
  t.regex(t.throws(() => new L1Loss().forward(pred, target))!.message, /targets of shape \[2,3\] do not match predictions of shape \[2,4\]/);
  tf.dispose([pred, target]);
});

test('registry builds every loss', (t) => {
  t.true(LOSSES.build({ type: 'FocalLoss', gamma: 2, alpha: 0.25, lossWeight: 1 }) instanceof FocalLoss);
  t.true(LOSSES.build({ type: 'CrossEntropyLoss', useSigmoid: true }) instanceof CrossEntropyLoss);
  t.true(LOSSES.build({ type: 'L1Loss' }) instanceof L1Loss);
  t.true(LOSSES.build({ type: 'SmoothL1Loss', beta: 1 / 9 }) instanceof SmoothL1Loss);
});
