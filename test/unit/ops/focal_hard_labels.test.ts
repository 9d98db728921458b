import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import '../../../src/backends/register_gradients.ts';
import { FocalLoss, sigmoidFocalLossElementwise, sigmoidFocalLossSumHardLabels } from '../../../src/models/losses/focal_loss.ts';

test.before(async () => {
  await tf.setBackend('cpu');
});

// 12 rows x 5 classes: labels 0..4 are positives, 5 is background; row weights include ignored rows.
const ROWS = 12;
const CLASSES = 5;
const LOGIT_VALUES = [0, 0.5, -0.5, 3, -3, 20, -20, 60, -60, 100, -100, 1.25];
const logitsData = Float32Array.from({ length: ROWS * CLASSES }, (_, i) => LOGIT_VALUES[(i * 7) % LOGIT_VALUES.length]! * (i % 3 === 0 ? 1 : 0.5));
const labels = Int32Array.from([0, 5, 4, 2, 5, 5, 1, 3, 5, 0, 4, 5]);
const weights = Float32Array.from([1, 1, 0, 1, 1, 0, 1, 1, 1, 2, 1, 1]);

function oneHot(): tf.Tensor2D {
  const data = new Float32Array(ROWS * CLASSES);
  labels.forEach((label, row) => {
    if (label < CLASSES) data[row * CLASSES + label] = 1;
  });
  return tf.tensor2d(data, [ROWS, CLASSES]);
}

test.serial('hard-label sum equals element-wise focal loss', (t) => {
  const logits = tf.tensor2d(logitsData, [ROWS, CLASSES]);
  const targets = oneHot();
  const weight = tf.tensor2d(weights, [ROWS, 1]);
  const reference = tf.sum(tf.mul(sigmoidFocalLossElementwise(logits, targets, 2, 0.25), weight)).dataSync()[0]!;
  const fast = sigmoidFocalLossSumHardLabels(logits, labels, weights, 2, 0.25).dataSync()[0]!;
  t.true(Math.abs(fast - reference) <= 1e-5 * Math.abs(reference), `${fast} vs ${reference}`);
  tf.dispose([logits, targets, weight]);
});

test.serial('hard-label gradient equals element-wise gradient', (t) => {
  const logits = tf.tensor2d(logitsData, [ROWS, CLASSES]);
  const targets = oneHot();
  const weight = tf.tensor2d(weights, [ROWS, 1]);
  const reference = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(sigmoidFocalLossElementwise(x, targets, 2, 0.25), weight)))(logits);
  const before = tf.memory().numTensors;
  const fast = tf.grad((x: tf.Tensor) => sigmoidFocalLossSumHardLabels(x as tf.Tensor2D, labels, weights, 2, 0.25))(logits);
  t.is(tf.memory().numTensors, before + 1, 'only the gradient stays');
  const expected = reference.dataSync();
  const actual = fast.dataSync();
  for (let i = 0; i < expected.length; i++) {
    t.true(Math.abs(actual[i]! - expected[i]!) <= 1e-6 + 1e-5 * Math.abs(expected[i]!), `element ${i}: ${actual[i]} vs ${expected[i]}`);
  }
  t.true(actual.every(Number.isFinite));
  tf.dispose([logits, targets, weight, reference, fast]);
});

test.serial('FocalLoss integer labels use avgFactor', (t) => {
  const loss = new FocalLoss({ lossWeight: 2 });
  const logits = tf.tensor2d(logitsData, [ROWS, CLASSES]);
  const targets = oneHot();
  const viaLabels = loss.forward(logits, tf.tensor1d(labels, 'int32'), { weight: tf.tensor1d(weights), avgFactor: 4 }).dataSync()[0]!;
  const weight = tf.tensor2d(weights, [ROWS, 1]);
  const reference = (tf.sum(tf.mul(sigmoidFocalLossElementwise(logits, targets, 2, 0.25), weight)).dataSync()[0]! / 4) * 2;
  t.true(Math.abs(viaLabels - reference) <= 1e-5 * reference);
  const mean = loss.forward(logits, tf.tensor1d(labels, 'int32')).dataSync()[0]!;
  const meanReference = tf.mean(sigmoidFocalLossElementwise(logits, targets, 2, 0.25)).dataSync()[0]! * 2;
  t.true(Math.abs(mean - meanReference) <= 1e-5 * meanReference);
  tf.dispose([logits, targets, weight]);
});

test.serial('no positives leaves only the background term', (t) => {
  const logits = tf.tensor2d([[0, 0]]);
  // p = 0.5, softplus(0) = ln 2: (1 - 0.25) * 0.25 * ln 2 per element.
  const value = sigmoidFocalLossSumHardLabels(logits, Int32Array.from([2]), undefined).dataSync()[0]!;
  t.true(Math.abs(value - 2 * 0.75 * 0.25 * Math.LN2) < 1e-7);
  logits.dispose();
});
