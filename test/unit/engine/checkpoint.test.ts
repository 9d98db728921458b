import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { findLatestCheckpoint, loadCheckpoint, saveCheckpoint } from '../../../src/engine/checkpoint.ts';
import { SGD } from '../../../src/engine/optimizer.ts';
import { BatchNorm2d, Conv2d } from '../../../src/nn/layers.ts';
import { Module } from '../../../src/nn/module.ts';
import { setInitSeed } from '../../../src/nn/init.ts';
import { CheckpointError } from '../../../src/utils/errors.ts';

class TinyNet extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  constructor(outChannels = 4) {
    super();
    this.conv = this.addModule('conv', new Conv2d({ inChannels: 3, outChannels, kernelSize: 3, padding: 1, bias: true }));
    this.bn = this.addModule('bn', new BatchNorm2d(outChannels));
  }
}

test.before(async () => {
  await tf.setBackend('cpu');
});

function workDir(): string {
  return mkdtempSync(join(tmpdir(), 'rladet-ckpt-'));
}

test.serial('checkpoint round trip restores weights and momentum', async (t) => {
  setInitSeed(1);
  const source = new TinyNet();
  const sgd = new SGD({ lr: 0.1, momentum: 0.9 });
  const params = new Map(source.trainableParameters());
  const grads = new Map([...params].map(([name, v]) => [name, tf.onesLike(v) as tf.Tensor]));
  sgd.step(params, grads, 0.1);
  tf.dispose([...grads.values()]);
  const dir = workDir();
  const path = join(dir, 'epoch_1.safetensors');
  await saveCheckpoint(path, source, sgd, { epoch: 1, iteration: 7, metrics: { bbox_mAP: 0.25 } });

  setInitSeed(2);
  const target = new TinyNet();
  const restored = new SGD({ lr: 0.1, momentum: 0.9 });
  const before = tf.memory().numTensors;
  const meta = await loadCheckpoint(path, target, restored);
  t.is(tf.memory().numTensors, before + restored.stateTensors().size);
  t.deepEqual(meta, { epoch: 1, iteration: 7, metrics: { bbox_mAP: 0.25 }, optimizerState: {} });
  for (const [name, variable] of source.stateDict()) {
    t.deepEqual([...target.stateDict().get(name)!.dataSync()], [...variable.dataSync()], name);
  }
  t.deepEqual([...restored.stateTensors().get('momentum_buffer.conv.weight')!.dataSync()], [...sgd.stateTensors().get('momentum_buffer.conv.weight')!.dataSync()]);
  t.deepEqual(readdirSync(dir), ['epoch_1.safetensors']);
  source.dispose();
  target.dispose();
  sgd.disposeState();
  restored.disposeState();
});

test.serial('truncated checkpoint is rejected by name', async (t) => {
  const net = new TinyNet();
  const dir = workDir();
  const path = join(dir, 'epoch_2.safetensors');
  await saveCheckpoint(path, net, undefined, { epoch: 2, iteration: 10 });
  const bytes = readFileSync(path);
  writeFileSync(path, bytes.subarray(0, bytes.length - 100));
  const error = await t.throwsAsync(loadCheckpoint(path, net), { instanceOf: CheckpointError });
  t.regex(error!.message, new RegExp(`^${path.replace(/[.]/g, '\\.')}: invalid safetensors file: .*file has`));
  net.dispose();
});

test.serial('weights-only checkpoint cannot resume', async (t) => {
  const net = new TinyNet();
  const sgd = new SGD({ lr: 0.1, momentum: 0.9 });
  const path = join(workDir(), 'converted.safetensors');
  await saveCheckpoint(path, net, undefined, { epoch: 0, iteration: 0, convertedFrom: 'resnet50.pth' });
  await t.throwsAsync(loadCheckpoint(path, net, sgd), {
    instanceOf: CheckpointError,
    message:
      `${path} contains weights only (converted from resnet50.pth), with no epoch, iteration or optimizer state, so training cannot ` +
      `resume from it. Start from its weights with --load-from ${path}`,
  });
  const meta = await loadCheckpoint(path, net);
  t.is(meta.convertedFrom, 'resnet50.pth');
  net.dispose();
  sgd.disposeState();
});

test.serial('checkpoint of another shape names key and shapes', async (t) => {
  const small = new TinyNet(4);
  const large = new TinyNet(8);
  const path = join(workDir(), 'epoch_1.safetensors');
  await saveCheckpoint(path, small, undefined, { epoch: 1, iteration: 1 });
  await t.throwsAsync(loadCheckpoint(path, large), {
    instanceOf: CheckpointError,
    message: `${path}: 'conv.weight' has shape [3, 3, 3, 4] in the checkpoint but [3, 3, 3, 8] in the model`,
  });
  small.dispose();
  large.dispose();
});

test.serial('latest checkpoint is the highest epoch', async (t) => {
  const dir = workDir();
  for (const name of ['epoch_2.safetensors', 'epoch_10.safetensors', 'epoch_9.safetensors', 'notes.txt']) writeFileSync(join(dir, name), '');
  t.is(findLatestCheckpoint(dir), join(dir, 'epoch_10.safetensors'));
  t.is(findLatestCheckpoint(join(dir, 'missing')), undefined);
});

test.serial('checkpoint without a model tensor lists it', async (t) => {
  const withoutBias = new Module0();
  const net = new TinyNet();
  const path = join(workDir(), 'epoch_1.safetensors');
  await saveCheckpoint(path, withoutBias, undefined, { epoch: 1, iteration: 1 });
  await t.throwsAsync(loadCheckpoint(path, net), {
    instanceOf: CheckpointError,
    message: `${path}: missing model tensors conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var; was it saved from a different config?`,
  });
  withoutBias.dispose();
  net.dispose();
});

/** TinyNet's convolution without bias and without the norm layer. */
class Module0 extends Module {
  constructor() {
    super();
    this.addModule('conv', new Conv2d({ inChannels: 3, outChannels: 4, kernelSize: 3, padding: 1 }));
  }
}
