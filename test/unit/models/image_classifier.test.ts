import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import type { ClassifierConfig } from '../../../src/config/component_types.ts';
import '../../../src/models/backbones/resnet.ts';
import { RLAResNet } from '../../../src/models/backbones/rla_resnet.ts';
import '../../../src/models/classifiers/image_classifier.ts';
import type { ImageClassifier } from '../../../src/models/classifiers/image_classifier.ts';
import { BatchNorm2d, setLayerCallObserver } from '../../../src/nn/layers.ts';
import type { Module } from '../../../src/nn/module.ts';
import { CLASSIFIERS } from '../../../src/registry/index.ts';
import { ConfigError } from '../../../src/utils/errors.ts';
import { withModel } from './backbone_helpers.ts';

test.before(async () => {
  await tf.setBackend('cpu');
});

function build(config: ClassifierConfig): ImageClassifier {
  return CLASSIFIERS.build(config, 'model') as ImageClassifier;
}

test('RLA classifier reads C5 and final state', (t) => {
  const config: ClassifierConfig = {
    type: 'ImageClassifier',
    backbone: { type: 'RLAResNet', stageBlocks: [1, 1, 1, 1], baseChannels: 8, rlaChannels: 8 },
    numClasses: 10,
  };
  withModel(build(config), (model) => {
    t.true(model.backbone instanceof RLAResNet);
    t.true(model.stateNorm instanceof BatchNorm2d);
    const state = model.stateDict();
    // C5 has 8 * 8 * 4 = 256 channels, plus the 8 state channels.
    t.deepEqual(state.get('fc.weight')?.shape, [264, 10]);
    t.deepEqual(state.get('bn2.weight')?.shape, [8]);
    t.true(state.has('backbone.stage_bns.3.0.running_mean'));

    model.eval();
    const names = new Map<Module, string>(model.namedModules().map(([name, module]) => [module, name]));
    const called = new Set<string>();
    const previous = setLayerCallObserver((layer) => called.add(names.get(layer) ?? '?'));
    const before = tf.memory().numTensors;
    const images = tf.randomNormal([2, 40, 40, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
    let logits: tf.Tensor2D;
    try {
      logits = model.forward(images);
    } finally {
      setLayerCallObserver(previous);
    }
    t.deepEqual(logits.shape, [2, 10]);
    t.true(called.has('backbone.recurrent_convs.3'), 'the last RLA update runs');
    t.true(called.has('bn2'));
    tf.dispose([images, logits]);
    t.is(tf.memory().numTensors, before);
  });
});

test('ResNet classifier pools C5 into fc', (t) => {
  const config: ClassifierConfig = {
    type: 'ImageClassifier',
    backbone: { type: 'ResNet', stageBlocks: [1, 1, 1, 1], baseChannels: 8 },
  };
  withModel(build(config), (model) => {
    t.is(model.numClasses, 1000);
    t.is(model.stateNorm, undefined);
    t.deepEqual(model.stateDict().get('fc.weight')?.shape, [256, 1000]);
    t.false(model.stateDict().has('bn2.weight'));

    // With a zero fc weight the logits are the fc bias, whatever the image.
    const images = tf.randomNormal([1, 33, 35, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
    tf.tidy(() => model.fc.weight.assign(tf.zerosLike(model.fc.weight)));
    const logits = model.forward(images);
    t.deepEqual(logits.shape, [1, 1000]);
    t.deepEqual([...logits.dataSync()], [...model.fc.bias!.dataSync()]);
    tf.dispose([images, logits]);
  });
});

test('classifier option errors', (t) => {
  const cases: Array<[object, string]> = [
    [
      { backbone: { type: 'ResNet', stageBlocks: [1, 1, 1, 1], baseChannels: 8, outIndices: [0, 1] } },
      'model.backbone.outIndices: the classifier reads the last stage (3), got [0,1]',
    ],
    [{ backbone: { type: 'ResNet', depth: 50 }, numClasses: 0 }, 'model.numClasses: expected a positive integer, got 0'],
    [{ backbone: { type: 'ResNet', depth: 50 }, num_classes: 10 }, "model: unknown option 'num_classes'"],
  ];
  const before = tf.memory().numTensors;
  for (const [options, message] of cases) {
    const error = t.throws(() => CLASSIFIERS.build({ type: 'ImageClassifier', ...options }, 'model'), { instanceOf: ConfigError });
    t.true(error?.message.startsWith(message), `${error?.message} should start with ${message}`);
  }
  t.is(tf.memory().numTensors, before, 'a rejected config leaves no weights behind');
});
