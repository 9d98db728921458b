import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import { StepLrSchedule, scaleLrToBatch } from '../../../src/engine/lr_schedule.ts';
import { AdamW, SGD, buildOptimizer, clipGradNorm } from '../../../src/engine/optimizer.ts';

test.before(async () => {
  await tf.setBackend('cpu');
});

test.serial('SGD matches torch update rule', (t) => {
  // Hand-computed with torch.optim.SGD's rule, lr 0.1, momentum 0.9, weight decay 0.01:
  // step 1: g = 1 + 0.01*2 = 1.02, v = 1.02, p = 2 - 0.102 = 1.898
  // step 2: g = 1 + 0.01*1.898 = 1.01898, v = 0.9*1.02 + 1.01898 = 1.93698, p = 1.898 - 0.193698 = 1.704302
  const p = tf.variable(tf.tensor1d([2]));
  const params = new Map([['p', p]]);
  const sgd = new SGD({ lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
  const grad = tf.tensor1d([1]);
  sgd.step(params, new Map([['p', grad]]), 0.1);
  t.true(Math.abs(p.dataSync()[0]! - 1.898) < 1e-6);
  sgd.step(params, new Map([['p', grad]]), 0.1);
  t.true(Math.abs(p.dataSync()[0]! - 1.704302) < 1e-6);
  t.true(Math.abs(sgd.stateTensors().get('momentum_buffer.p')!.dataSync()[0]! - 1.93698) < 1e-6);
  grad.dispose();
  p.dispose();
  sgd.disposeState();
});

test.serial('SGD frees its temporaries', (t) => {
  const p = tf.variable(tf.ones([3, 3]));
  const params = new Map([['p', p]]);
  const sgd = new SGD({ lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
  const grad = tf.ones([3, 3]);
  sgd.step(params, new Map([['p', grad]]), 0.01);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) sgd.step(params, new Map([['p', grad]]), 0.01);
  t.is(tf.memory().numTensors, before);
  grad.dispose();
  p.dispose();
  sgd.disposeState();
});

test.serial('clipGradNorm scales to max norm', (t) => {
  const grads = new Map<string, tf.Tensor>([
    ['a', tf.tensor1d([3, 0])],
    ['b', tf.tensor1d([0, 4])],
  ]);
  const norm = clipGradNorm(grads, 1);
  t.is(norm, 5);
  const coefficient = 1 / (5 + 1e-6);
  t.true(Math.abs(grads.get('a')!.dataSync()[0]! - 3 * coefficient) < 1e-6);
  t.true(Math.abs(grads.get('b')!.dataSync()[1]! - 4 * coefficient) < 1e-6);
  const unchanged = new Map<string, tf.Tensor>([['a', tf.tensor1d([0.3, 0.4])]]);
  t.true(Math.abs(clipGradNorm(unchanged, 1) - 0.5) < 1e-6);
  t.deepEqual([...unchanged.get('a')!.dataSync()].map((v) => Math.round(v * 1e6) / 1e6), [0.3, 0.4]);
  for (const g of [...grads.values(), ...unchanged.values()]) g.dispose();
});

test.serial('step schedule with linear warmup', (t) => {
  const schedule = new StepLrSchedule(0.02, { step: [8, 11], warmup: 'linear', warmupIters: 500, warmupRatio: 0.001 });
  t.true(Math.abs(schedule.lrAt(0, 0) - 0.02 * 0.001) < 1e-12);
  // Halfway: 1 - 0.5 * 0.999 = 0.5005 of the regular rate.
  t.true(Math.abs(schedule.lrAt(0, 250) - 0.02 * 0.5005) < 1e-12);
  t.is(schedule.lrAt(0, 500), 0.02);
  t.is(schedule.lrAt(7, 10_000), 0.02);
  t.true(Math.abs(schedule.lrAt(8, 10_000) - 0.002) < 1e-12);
  t.true(Math.abs(schedule.lrAt(11, 10_000) - 0.0002) < 1e-12);
  t.is(scaleLrToBatch(0.02, 2, 16), 0.0025);
});

test.serial('schedule rejects warmup without iterations', (t) => {
  t.throws(() => new StepLrSchedule(0.01, { step: [8], warmup: 'linear', warmupIters: 0 }), {
    message: "lrConfig.warmupIters: expected > 0 with warmup 'linear', got 0",
  });
});

test.serial('AdamW matches torch update rule', (t) => {
  // torch.optim.AdamW, lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01; gradients 1 then 3.
  const lr = 0.1;
  let p = 2;
  let m = 0;
  let v = 0;
  const expected: number[] = [];
  [1, 3].forEach((g, i) => {
    const step = i + 1;
    p *= 1 - lr * 0.01;
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g * g;
    p -= (lr * (m / (1 - 0.9 ** step))) / (Math.sqrt(v / (1 - 0.999 ** step)) + 1e-8);
    expected.push(p);
  });
  t.true(Math.abs(expected[1]! - 1.8043237) < 1e-6, 'reference value computed by hand');

  const parameter = tf.variable(tf.tensor1d([2]));
  const params = new Map([['p', parameter]]);
  const adam = new AdamW({ lr, weightDecay: 0.01 });
  for (const [i, g] of [1, 3].entries()) {
    const grad = tf.tensor1d([g]);
    adam.step(params, new Map([['p', grad]]), lr);
    grad.dispose();
    t.true(Math.abs(parameter.dataSync()[0]! - expected[i]!) < 1e-6, `step ${i + 1}`);
  }
  t.deepEqual(adam.stateRecord(), { 'step.p': 2 });
  t.deepEqual([...adam.stateTensors().keys()], ['exp_avg.p', 'exp_avg_sq.p']);
  parameter.dispose();
  adam.disposeState();
});

test.serial('AdamW state restores and continues', (t) => {
  const a = tf.variable(tf.tensor1d([1, -1]));
  const b = tf.variable(tf.tensor1d([1, -1]));
  const first = new AdamW({ lr: 0.05 });
  const grad = tf.tensor1d([0.5, 2]);
  first.step(new Map([['w', a]]), new Map([['w', grad]]), 0.05);
  b.assign(a);
  const second = new AdamW({ lr: 0.05 });
  second.loadState(first.stateTensors(), first.stateRecord());
  first.step(new Map([['w', a]]), new Map([['w', grad]]), 0.05);
  second.step(new Map([['w', b]]), new Map([['w', grad]]), 0.05);
  t.deepEqual([...b.dataSync()], [...a.dataSync()]);
  t.throws(() => second.loadState(new Map(), { 'step.x': 1 }), { message: "AdamW.loadState: moments of 'x' are missing" });
  tf.dispose([a, b, grad]);
  first.disposeState();
  second.disposeState();
});

test.serial('unknown optimizer type is rejected', (t) => {
  t.throws(() => buildOptimizer({ type: 'Adagrad', lr: 0.1 }), { message: "optimizer.type: 'Adagrad' is not supported (supported: SGD, AdamW)" });
  t.throws(() => buildOptimizer({ type: 'SGD', lr: 0.1, momentun: 0.9 }), { message: /optimizer: unknown option 'momentun' \(did you mean 'momentum'\?\)/ });
});
