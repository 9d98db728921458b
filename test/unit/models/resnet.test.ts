import test from 'ava';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import { BatchNorm2d } from '../../../src/nn/layers.ts';
import { ResNet, type ResNetOptions } from '../../../src/models/backbones/resnet.ts';
import { BACKBONES } from '../../../src/registry/index.ts';
import { ConfigError } from '../../../src/utils/errors.ts';
import { frozenParameterNames, maxAbs, trainingStepGradients, withModel as withBuiltModel } from './backbone_helpers.ts';

// The Node build of tfjs-core registers no gradients; this file of its ES module build does.
createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients');

/** A small ResNet that runs a training step in milliseconds: outputs 32, 64, 128, 256 channels. */
const TINY: ResNetOptions = { stageBlocks: [1, 1, 1, 1], baseChannels: 8 };

test.before(async () => {
  await tf.setBackend('cpu');
});

function withModel<T>(options: ResNetOptions, body: (model: ResNet) => T): T {
  return withBuiltModel(new ResNet(options), body);
}

test('ResNet-50 and 101 parameter counts', (t) => {
  // torchvision's resnet50 / resnet101 without the fc layer.
  t.is(withModel({ depth: 50 }, (model) => model.countParameters()), 23_508_032);
  t.is(withModel({ depth: 101 }, (model) => model.countParameters()), 42_500_160);
});

test('ResNet-50 state dict uses torchvision names', (t) => {
  withModel({ depth: 50 }, (model) => {
    const state = model.stateDict();
    // torchvision's resnet50 state dict has 320 entries: 53 num_batches_tracked, 2 for fc.
    t.is(state.size, 320 - 53 - 2);
    t.deepEqual(state.get('conv1.weight')?.shape, [7, 7, 3, 64]);
    t.deepEqual(state.get('bn1.running_mean')?.shape, [64]);
    t.deepEqual(state.get('layer1.0.conv1.weight')?.shape, [1, 1, 64, 64]);
    t.deepEqual(state.get('layer1.0.downsample.0.weight')?.shape, [1, 1, 64, 256]);
    t.deepEqual(state.get('layer1.0.downsample.1.running_var')?.shape, [256]);
    t.deepEqual(state.get('layer2.0.conv2.weight')?.shape, [3, 3, 128, 128]);
    t.deepEqual(state.get('layer4.2.bn3.weight')?.shape, [2048]);
    t.false(state.has('layer1.1.downsample.0.weight'));
    t.deepEqual(model.outChannels, [256, 512, 1024, 2048]);
    t.deepEqual(model.outStrides, [4, 8, 16, 32]);
  });
});

test('odd input sizes give PyTorch output sizes', (t) => {
  withModel(TINY, (model) => {
    model.eval();
    const before = tf.memory().numTensors;
    const images = tf.zeros([2, 97, 123, 3]) as tf.Tensor4D;
    const outputs = model.forward(images);
    // stem: floor((97 + 6 - 7) / 2) + 1 = 49, max pool: floor((49 + 2 - 3) / 2) + 1 = 25; width 123 -> 62 -> 31.
    // Each stride-2 stage then gives ceil(size / 2).
    t.deepEqual(
      outputs.map((output) => output.shape),
      [
        [2, 25, 31, 32],
        [2, 13, 16, 64],
        [2, 7, 8, 128],
        [2, 4, 4, 256],
      ],
    );
    tf.dispose([images, ...outputs]);
    t.is(tf.memory().numTensors, before);
  });
});

test('outIndices and numStages select outputs', (t) => {
  withModel({ ...TINY, numStages: 3, outIndices: [1, 2] }, (model) => {
    t.deepEqual(model.outChannels, [64, 128]);
    t.deepEqual(model.outStrides, [8, 16]);
    t.false(model.stateDict().has('layer4.0.conv1.weight'));
    const images = tf.zeros([1, 64, 64, 3]) as tf.Tensor4D;
    const outputs = model.forward(images);
    t.deepEqual(
      outputs.map((output) => output.shape),
      [
        [1, 8, 8, 64],
        [1, 4, 4, 128],
      ],
    );
    tf.dispose([images, ...outputs]);
  });
});

test('frozenStages 1 freezes stem and layer1', (t) => {
  withModel({ ...TINY, frozenStages: 1, normEval: false }, (model) => {
    model.train();
    const frozen = frozenParameterNames(model);
    const expected = model
      .namedParameters()
      .map(([name]) => name)
      .filter((name) => /^(conv1|bn1|layer1)\./.test(name));
    t.deepEqual(frozen, expected);
    t.true(expected.length > 3);

    // The frozen norm layers stay in inference mode after train(); the others train.
    for (const [name, module] of model.namedModules()) {
      if (!(module instanceof BatchNorm2d)) continue;
      t.is(module.training, !/^(bn1|layer1\.)/.test(name), name);
    }
  });
});

test('frozenStages 0 freezes only the stem', (t) => {
  withModel({ ...TINY, frozenStages: 0 }, (model) => {
    const frozen = frozenParameterNames(model);
    t.deepEqual(frozen, ['conv1.weight', 'bn1.weight', 'bn1.bias']);
  });
});

test('normEval keeps running stats while scale trains', (t) => {
  for (const normEval of [true, false]) {
    withModel({ ...TINY, normEval, zeroInitResidual: false }, (model) => {
      const runningMean = model.stateDict().get('layer2.0.bn2.running_mean')!;
      const before = runningMean.dataSync().slice();
      const gradients = trainingStepGradients(model);
      const after = runningMean.dataSync();

      const unchanged = before.every((value, i) => value === after[i]);
      t.is(unchanged, normEval, `normEval ${normEval}: running mean unchanged`);
      const scaleGradient = gradients.get('layer2.0.bn2.weight');
      t.truthy(scaleGradient, `normEval ${normEval}: scale has a gradient`);
      t.true(maxAbs(scaleGradient!) > 0, `normEval ${normEval}: scale gradient is non-zero`);
      tf.dispose([...gradients.values()]);
    });
  }
});

test('frozen parameters get no gradient', (t) => {
  withModel({ ...TINY, frozenStages: 1 }, (model) => {
    const before = tf.memory().numTensors;
    const gradients = trainingStepGradients(model);
    t.false(gradients.has('conv1.weight'));
    t.false(gradients.has('layer1.0.conv2.weight'));
    t.true(gradients.has('layer2.0.conv2.weight'));
    t.is(gradients.size, model.trainableParameters().length);
    tf.dispose([...gradients.values()]);
    t.is(tf.memory().numTensors, before);
  });
});

test('zeroInitResidual zeroes each last norm scale', (t) => {
  for (const zeroInitResidual of [true, false]) {
    withModel({ ...TINY, zeroInitResidual }, (model) => {
      const state = model.stateDict();
      const expected = zeroInitResidual ? 0 : 1;
      t.deepEqual([...new Set(state.get('layer3.0.bn3.weight')!.dataSync())], [expected]);
      t.deepEqual([...new Set(state.get('layer3.0.bn2.weight')!.dataSync())], [1]);
    });
  }
});

test('GroupNorm variant uses gn names', (t) => {
  withModel({ ...TINY, norm: { type: 'GN', numGroups: 4 } }, (model) => {
    const state = model.stateDict();
    t.deepEqual(state.get('gn1.weight')?.shape, [8]);
    t.deepEqual(state.get('layer1.0.gn3.bias')?.shape, [32]);
    t.deepEqual(state.get('layer1.0.downsample.1.weight')?.shape, [32]);
    t.false(state.has('bn1.weight'));
    t.is(model.namedBuffers().length, 0);
    const images = tf.randomNormal([1, 32, 32, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const outputs = model.forward(images);
    t.deepEqual(outputs[3]!.shape, [1, 1, 1, 256]);
    tf.dispose([images, ...outputs]);
  });
});

test('norm requiresGrad false freezes norm layers', (t) => {
  withModel({ ...TINY, norm: { type: 'BN', requiresGrad: false } }, (model) => {
    const trainable = model.trainableParameters().map(([name]) => name);
    t.true(trainable.length > 0);
    t.true(trainable.every((name) => name.endsWith('conv1.weight') || name.endsWith('conv2.weight') || name.endsWith('conv3.weight') || name.endsWith('downsample.0.weight')));
  });
});

test('invalid options name path and value', (t) => {
  const cases: Array<[unknown, string]> = [
    [{ depth: 34 }, 'model.backbone.depth: expected one of 50, 101, 152 (or give stageBlocks), got 34'],
    [{ depth: 50, frozenStage: 1 }, "model.backbone: unknown option 'frozenStage' (did you mean 'frozenStages'?)"],
    [{ depth: 50, frozenStages: 5 }, 'model.backbone.frozenStages: expected an integer from -1 to 4, got 5'],
    [{ depth: 50, outIndices: [2, 1] }, 'model.backbone.outIndices: expected ascending stage indices in [0, 3], got [2,1]'],
    [{ depth: 50, groups: 32 }, 'model.backbone.groups: only 1 is supported'],
    [{ depth: 50, style: 'caffe' }, "model.backbone.style: only 'pytorch'"],
    [{ depth: 50, norm: 'LN' }, 'model.backbone.norm.type: expected \'BN\', \'SyncBN\' or \'GN\', got "LN"'],
    [{ ...TINY, norm: 'GN' }, 'model.backbone.norm.numGroups: 32 groups do not divide a layer of 8 channels'],
    [{ stageBlocks: [1, 0, 1, 1] }, 'model.backbone.stageBlocks: expected a list of positive integers, got [1,0,1,1]'],
  ];
  for (const [options, message] of cases) {
    const error = t.throws(() => BACKBONES.build({ type: 'ResNet', ...(options as object) }, 'model.backbone'), { instanceOf: ConfigError });
    t.true(error?.message.startsWith(message), `${error?.message} should start with ${message}`);
  }
});

test('forward rejects wrong channel count', (t) => {
  withModel(TINY, (model) => {
    const images = tf.zeros([1, 32, 32, 1]) as tf.Tensor4D;
    t.throws(() => model.forward(images), { message: 'model.backbone: expected images [N, H, W, 3] (NHWC), got [1, 32, 32, 1]' });
    images.dispose();
  });
});
