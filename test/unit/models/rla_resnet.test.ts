import test from 'ava';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import { registerWasmTrainingKernels } from '../../../src/backends/wasm_kernels.ts';
import { loadWeights } from '../../../src/engine/weights.ts';
import { readSafetensors, toFloat32Array, type SafetensorsTensor } from '../../../src/io/safetensors.ts';
import { RLAResNet, type RLAResNetOptions } from '../../../src/models/backbones/rla_resnet.ts';
import { BatchNorm2d, setLayerCallObserver } from '../../../src/nn/layers.ts';
import type { Module } from '../../../src/nn/module.ts';
import { BACKBONES } from '../../../src/registry/index.ts';
import { ConfigError } from '../../../src/utils/errors.ts';
import { frozenParameterNames, maxAbs, trainingStepGradients, withModel as withBuiltModel } from './backbone_helpers.ts';

// The Node build of tfjs-core registers no gradients; this file of its ES module build does.
createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients');

/** The official fixture model: one block per stage, bottleneck widths 16/32/64/128. */
const FIXTURE_OPTIONS: RLAResNetOptions = { layers: [1, 1, 1, 1], widthPerGroup: 16 };
/** A smaller model for training steps: outputs 32, 64, 128, 256 channels, RLA state of 8. */
const TINY: RLAResNetOptions = { stageBlocks: [1, 2, 1, 1], baseChannels: 8, rlaChannels: 8 };

function fixturePath(name: string): string {
  return new URL(`../../fixtures/rla/${name}`, import.meta.url).pathname;
}

function withModel<T>(options: RLAResNetOptions, body: (model: RLAResNet) => T): T {
  return withBuiltModel(new RLAResNet(options), body);
}

/** Converts an NCHW activation from PyTorch to NHWC. */
function activationFromPyTorch(tensor: SafetensorsTensor): tf.Tensor4D {
  return tf.tidy(() => tf.transpose(tf.tensor4d(toFloat32Array(tensor), tensor.shape as [number, number, number, number]), [0, 2, 3, 1]));
}

/** Largest absolute difference divided by the largest magnitude of `expected`. */
function relativeError(actual: tf.Tensor, expected: tf.Tensor): number {
  return tf.tidy(() => tf.div(tf.max(tf.abs(tf.sub(actual, expected))), tf.max(tf.abs(expected))).dataSync()[0]!);
}

test.before(async () => {
  await tf.setBackend('cpu');
});

test('RLA-ResNet detection backbone parameter counts', (t) => {
  const cases: Array<[RLAResNetOptions, number, number]> = [
    [{ depth: 50 }, 23_789_632, 1_024],
    [{ depth: 101 }, 42_922_112, 2_112],
    [FIXTURE_OPTIONS, 3_679_488, 256],
  ];
  for (const [options, total, stageNorms] of cases) {
    withModel(options, (model) => {
      const label = JSON.stringify(options);
      t.is(model.countParameters(), total, label);
      t.is(model.stageNorms.countParameters(), stageNorms, label);
      t.is(model.convOuts.countParameters(), 122_880, label);
      t.is(model.recurrentConvs.countParameters(), 36_864, label);
      t.is(model.conv1.countParameters() + model.norm1.countParameters(), 9_536, label);
    });
  }
});

test('fixture checkpoint keys map one to one', async (t) => {
  const { tensors } = await readSafetensors(fixturePath('backbone.safetensors'));
  withModel(FIXTURE_OPTIONS, (model) => {
    const state = model.stateDict();
    t.deepEqual([...state.keys()].sort(), [...tensors.keys()].sort());
    for (const [name, variable] of state) {
      const shape = tensors.get(name)!.shape;
      const expected = shape.length === 4 ? [shape[2], shape[3], shape[1], shape[0]] : shape;
      t.deepEqual(variable.shape, expected, name);
    }
  });
});

test.serial('forward equals official outputs on cpu and wasm', async (t) => {
  const { tensors: io } = await readSafetensors(fixturePath('backbone_io.safetensors'));
  // The official torch.save checkpoint and the same weights as safetensors.
  const checkpoints = ['backbone.pth.tar', 'backbone.safetensors'];
  try {
    for (const [backend, checkpoint] of ['cpu', 'wasm'].flatMap((name) => checkpoints.map((file) => [name, file] as const))) {
      t.true(await tf.setBackend(backend), backend);
      if (backend === 'wasm') registerWasmTrainingKernels();
      const model = new RLAResNet(FIXTURE_OPTIONS);
      try {
        const { report } = await loadWeights(fixturePath(checkpoint), model);
        t.is(report.loaded.length, 109, `${checkpoint}: every parameter and buffer loaded`);
        t.deepEqual(report.missing, [], checkpoint);
        model.eval();
        const before = tf.memory().numTensors;
        const images = activationFromPyTorch(io.get('input')!);
        const { features, state } = model.forwardWithState(images, true);

        ['c2', 'c3', 'c4', 'c5'].forEach((name, i) => {
          const expected = activationFromPyTorch(io.get(`${name}_ref64`)!);
          t.deepEqual(features[i]!.shape, expected.shape, `${backend} ${checkpoint} ${name} shape`);
          const error = relativeError(features[i]!, expected);
          t.true(error < 1e-4, `${backend} ${checkpoint} ${name}: relative error ${error}`);
          expected.dispose();
        });
        const expectedState = activationFromPyTorch(io.get('h4_ref64')!);
        const stateError = relativeError(state!, expectedState);
        t.true(stateError < 1e-4, `${backend} ${checkpoint} final RLA state: relative error ${stateError}`);

        tf.dispose([images, expectedState, state!, ...features]);
        t.is(tf.memory().numTensors, before, `${backend}: no tensor leaked`);
      } finally {
        model.dispose();
      }
    }
  } finally {
    await tf.setBackend('cpu');
  }
});

test.serial('state pooling averages valid cells', async (t) => {
  // 3x3 -> 2x2: the last row and column pool over the cells that exist (PyTorch ceil_mode).
  const expected = [(1 + 2 + 4 + 5) / 4, (3 + 6) / 2, (7 + 8) / 2, 9];
  try {
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const pooled = tf.tidy(() => tf.avgPool(tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 3, 3, 1]), 2, 2, 'same'));
      t.deepEqual(pooled.shape, [1, 2, 2, 1], backend);
      t.deepEqual([...pooled.dataSync()], expected, backend);
      pooled.dispose();
    }
  } finally {
    await tf.setBackend('cpu');
  }
});

test('odd input sizes run with matching state', (t) => {
  withModel(TINY, (model) => {
    for (const training of [false, true]) {
      model.train(training);
      const images = tf.randomNormal([1, 97, 123, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
      const before = tf.memory().numTensors;
      const { features, state } = model.forwardWithState(images, true);
      t.deepEqual(
        features.map((feature) => feature.shape),
        [
          [1, 25, 31, 32],
          [1, 13, 16, 64],
          [1, 7, 8, 128],
          [1, 4, 4, 256],
        ],
        `training ${training}`,
      );
      t.deepEqual(state!.shape, [1, 4, 4, 8], `training ${training}`);
      tf.dispose([...features, state!]);
      t.is(tf.memory().numTensors, before, `training ${training}: no tensor leaked`);
      images.dispose();
    }
  });
});

/** Names of the modules that ran during `run`, from the layer observer. */
function modulesCalled(model: RLAResNet, run: () => void): Set<string> {
  const names = new Map<Module, string>(model.namedModules().map(([name, module]) => [module, name]));
  const called = new Set<string>();
  const previous = setLayerCallObserver((layer) => called.add(names.get(layer) ?? '?'));
  try {
    run();
  } finally {
    setLayerCallObserver(previous);
  }
  return called;
}

test('last RLA update runs only when needed', (t) => {
  withModel(TINY, (model) => {
    const images = tf.zeros([1, 64, 64, 3]) as tf.Tensor4D;
    const lastUpdate = ['conv_outs.3', 'stage_bns.3.0', 'recurrent_convs.3'];
    const run = (keepFinalState: boolean) => () => tf.dispose(model.forwardWithState(images, keepFinalState).features);

    model.eval();
    const inference = modulesCalled(model, run(false));
    for (const name of lastUpdate) t.false(inference.has(name), `inference skips ${name}`);
    t.true(inference.has('stage_bns.2.0'));
    t.true(inference.has('stages.3.0.conv3'));

    const withState = modulesCalled(model, () => tf.dispose(Object.values(model.forwardWithState(images, true)).flat()));
    for (const name of lastUpdate) t.true(withState.has(name), `requested state runs ${name}`);

    model.train();
    const training = modulesCalled(model, run(false));
    for (const name of lastUpdate) t.true(training.has(name), `training runs ${name}`);
    images.dispose();
  });
});

test('frozenStages 1 freezes stem, stage 1 and its RLA', (t) => {
  withModel({ ...TINY, frozenStages: 1 }, (model) => {
    model.train();
    const frozen = frozenParameterNames(model);
    const expected = model
      .namedParameters()
      .map(([name]) => name)
      .filter((name) => /^(conv1|bn1|conv_outs\.0|recurrent_convs\.0|stages\.0|stage_bns\.0)\./.test(name));
    t.deepEqual(frozen, expected);
    t.true(expected.includes('conv_outs.0.weight'));
    t.true(expected.includes('stage_bns.0.0.weight'));
    t.true(expected.includes('stages.0.0.downsample.1.bias'));

    for (const [name, module] of model.namedModules()) {
      if (!(module instanceof BatchNorm2d)) continue;
      t.is(module.training, !/^(bn1|stages\.0\.|stage_bns\.0\.)/.test(name), name);
    }

    const gradients = trainingStepGradients(model);
    t.false(gradients.has('recurrent_convs.0.weight'));
    t.true(gradients.has('recurrent_convs.1.weight'));
    // The last RLA update feeds no output, so its parameters get no gradient either.
    const withoutGradient = model
      .trainableParameters()
      .map(([name]) => name)
      .filter((name) => !gradients.has(name));
    t.deepEqual(withoutGradient, ['conv_outs.3.weight', 'recurrent_convs.3.weight', 'stage_bns.3.0.weight', 'stage_bns.3.0.bias']);
    tf.dispose([...gradients.values()]);
  });
});

test('normEval keeps running stats while scale trains', (t) => {
  for (const normEval of [true, false]) {
    withModel({ ...TINY, normEval, zeroInitResidual: false }, (model) => {
      const before = tf.memory().numTensors;
      const state = model.stateDict();
      const watched = ['stage_bns.1.0', 'stages.1.1.bn2'];
      const runningBefore = watched.map((name) => state.get(`${name}.running_var`)!.dataSync().slice());
      const gradients = trainingStepGradients(model);

      watched.forEach((name, i) => {
        const after = state.get(`${name}.running_var`)!.dataSync();
        const unchanged = runningBefore[i]!.every((value, j) => value === after[j]);
        t.is(unchanged, normEval, `normEval ${normEval}: ${name} running variance unchanged`);
        const gradient = gradients.get(`${name}.weight`);
        t.truthy(gradient, `normEval ${normEval}: ${name} scale has a gradient`);
        t.true(maxAbs(gradient!) > 0, `normEval ${normEval}: ${name} scale gradient is non-zero`);
      });
      tf.dispose([...gradients.values()]);
      t.is(tf.memory().numTensors, before, `normEval ${normEval}: no tensor leaked`);
    });
  }
});

test('zero init covers each block last norm', (t) => {
  withModel(TINY, (model) => {
    const state = model.stateDict();
    t.deepEqual([...new Set(state.get('stages.1.1.bn3.weight')!.dataSync())], [0]);
    t.deepEqual([...new Set(state.get('stages.1.1.bn2.weight')!.dataSync())], [1]);
    t.deepEqual([...new Set(state.get('stage_bns.1.1.weight')!.dataSync())], [1]);
  });
});

test('registry alias and option errors', (t) => {
  const built = BACKBONES.build({ type: 'RLA_ResNet', ...FIXTURE_OPTIONS }, 'model.backbone');
  t.true(built instanceof RLAResNet);
  t.deepEqual(built.outChannels, [256, 512, 1024, 2048]);
  built.dispose();

  const cases: Array<[object, string]> = [
    [{ layers: [1, 1, 1, 1], stageBlocks: [1, 1, 1, 1] }, "model.backbone: give the blocks per stage as either 'layers' or 'stageBlocks', not both"],
    [{ depth: 50, rlaChannels: 0 }, 'model.backbone.rlaChannels: expected a positive integer, got 0'],
    [{ depth: 50, rla_channel: 32 }, "model.backbone: unknown option 'rla_channel' (did you mean 'rlaChannels'?)"],
  ];
  for (const [options, message] of cases) {
    const error = t.throws(() => BACKBONES.build({ type: 'RLAResNet', ...options }, 'model.backbone'), { instanceOf: ConfigError });
    t.true(error?.message.startsWith(message), `${error?.message} should start with ${message}`);
  }
});
