import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { registerWasmTrainingKernels } from '../../../src/backends/wasm_kernels.ts';
import { readCheckpoint, saveCheckpoint } from '../../../src/engine/checkpoint.ts';
import { initWeights } from '../../../src/engine/pretrained.ts';
import { convertByName, formatWeightLoadReport, loadWeights, planWeightLoad, type WeightLoadReport } from '../../../src/engine/weights.ts';
import { readSafetensors, toFloat32Array, writeSafetensors, type SafetensorsTensor } from '../../../src/io/safetensors.ts';
import { readWeightFile, type WeightFile } from '../../../src/io/weight_file.ts';
import { ResNet } from '../../../src/models/backbones/resnet.ts';
import { RLAResNet } from '../../../src/models/backbones/rla_resnet.ts';
import { Linear } from '../../../src/nn/layers.ts';
import { Module } from '../../../src/nn/module.ts';
import { setInitSeed } from '../../../src/nn/init.ts';
import { BACKBONES, DETECTORS } from '../../../src/registry/index.ts';
import { CheckpointError, ConfigError } from '../../../src/utils/errors.ts';
import '../../../src/register_all.ts';

const RLA = new URL('../../fixtures/rla/', import.meta.url).pathname;
const PYTORCH = new URL('../../fixtures/pytorch/', import.meta.url).pathname;
/** The torchvision-style fixture: torchvision's Bottleneck ResNet with 8 planes in stage 1, one block per stage. */
const TINY_RESNET = { stageBlocks: [1, 1, 1, 1], baseChannels: 8 };
const RLA_FIXTURE = { layers: [1, 1, 1, 1], widthPerGroup: 16 };

test.before(async () => {
  await tf.setBackend('cpu');
});

function nhwcFromNchw(tensor: SafetensorsTensor): tf.Tensor4D {
  return tf.tidy(() => tf.transpose(tf.tensor4d(toFloat32Array(tensor), tensor.shape as [number, number, number, number]), [0, 2, 3, 1]));
}

/** Largest absolute difference divided by the largest magnitude of `expected`. */
function relativeError(actual: tf.Tensor, expected: tf.Tensor): number {
  return tf.tidy(() => tf.div(tf.max(tf.abs(tf.sub(actual, expected))), tf.max(tf.abs(expected))).dataSync()[0]!);
}

async function withModel<M extends Module, T>(model: M, body: (model: M) => Promise<T> | T): Promise<T> {
  try {
    return await body(model);
  } finally {
    model.dispose();
  }
}

test.serial('torchvision ResNet reproduces stage outputs', async (t) => {
  const { tensors: io } = await readSafetensors(`${PYTORCH}resnet_tiny_io.safetensors`);
  try {
    for (const backend of ['cpu', 'wasm']) {
      t.true(await tf.setBackend(backend), backend);
      if (backend === 'wasm') registerWasmTrainingKernels();
      await withModel(new ResNet(TINY_RESNET), async (model) => {
        const { report } = await loadWeights(`${PYTORCH}resnet_tiny.pth`, model, { target: 'model.backbone' });
        t.is(report.loaded.length, 85);
        t.deepEqual(report.missing, []);
        t.deepEqual(report.unexpected, []);
        t.deepEqual(report.classifierOnly, ['fc.weight', 'fc.bias']);
        t.is(report.numBatchesTracked.length, 17);

        model.eval();
        const before = tf.memory().numTensors;
        const images = nhwcFromNchw(io.get('input')!);
        const outputs = model.forward(images);
        ['c2', 'c3', 'c4', 'c5'].forEach((name, i) => {
          const expected = nhwcFromNchw(io.get(`${name}_ref64`)!);
          t.deepEqual(outputs[i]!.shape, expected.shape, `${backend} ${name} shape`);
          const error = relativeError(outputs[i]!, expected);
          t.true(error < 1e-4, `${backend} ${name}: relative error ${error}`);
          expected.dispose();
        });
        tf.dispose([images, ...outputs]);
        t.is(tf.memory().numTensors, before, `${backend}: no tensor leaked`);
      });
    }
  } finally {
    await tf.setBackend('cpu');
  }
});

test.serial('conv weights go from OIHW to HWIO', async (t) => {
  const file = await readWeightFile(`${RLA}backbone.pth.tar`);
  await withModel(new RLAResNet(RLA_FIXTURE), async (model) => {
    const before = tf.memory().numTensors;
    await loadWeights(`${RLA}backbone.pth.tar`, model);
    t.is(tf.memory().numTensors, before, 'loading leaves no tensor behind');

    const stored = toFloat32Array(file.tensors.get('module.conv1.weight')!); // [64, 3, 7, 7]
    const loaded = model.conv1.weight.dataSync(); // [7, 7, 3, 64]
    // Element (o, i, y, x) of OIHW sits at (y, x, i, o) in HWIO.
    for (const [o, i, y, x] of [
      [0, 0, 0, 0],
      [63, 2, 6, 6],
      [5, 1, 3, 2],
      [40, 0, 6, 1],
    ] as const) {
      t.is(loaded[((y * 7 + x) * 3 + i) * 64 + o], stored[((o * 3 + i) * 7 + y) * 7 + x], `(${o}, ${i}, ${y}, ${x})`);
    }
    const runningVar = toFloat32Array(file.tensors.get('module.stage_bns.2.0.running_var')!);
    t.deepEqual([...model.stateDict().get('stage_bns.2.0.running_var')!.dataSync()], [...runningVar]);
  });
});

test.serial('pth.tar and safetensors load identical parameters', async (t) => {
  await withModel(new RLAResNet(RLA_FIXTURE), async (fromTorch) => {
    await withModel(new RLAResNet(RLA_FIXTURE), async (fromSafetensors) => {
      const torchReport = (await loadWeights(`${RLA}backbone.pth.tar`, fromTorch)).report;
      const safetensorsReport = (await loadWeights(`${RLA}backbone.safetensors`, fromSafetensors)).report;
      t.is(torchReport.loaded.length, 109);
      t.deepEqual(torchReport.removedPrefixes, ['module.']);
      t.is(torchReport.numBatchesTracked.length, 21);
      t.deepEqual([...safetensorsReport.loaded].sort(), [...torchReport.loaded].sort());
      t.deepEqual(safetensorsReport.removedPrefixes, []);
      const other = fromSafetensors.stateDict();
      for (const [name, variable] of fromTorch.stateDict()) {
        t.deepEqual(variable.dataSync(), other.get(name)!.dataSync(), name);
      }
    });
  });
});

test.serial('linear weights are transposed', async (t) => {
  class Head extends Module {
    readonly fc = this.addModule('fc', new Linear({ inFeatures: 3, outFeatures: 2 }));
  }
  const dir = mkdtempSync(join(tmpdir(), 'rladet-weights-'));
  const path = join(dir, 'head.safetensors');
  // PyTorch stores nn.Linear(3, 2).weight as [out, in].
  await writeSafetensors(path, {
    'fc.weight': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    'fc.bias': { dtype: 'F32', shape: [2], data: new Float32Array([0.5, -0.5]) },
  });
  await withModel(new Head(), async (head) => {
    await loadWeights(path, head);
    t.deepEqual(head.fc.weight.shape, [3, 2]);
    t.deepEqual([...head.fc.weight.dataSync()], [1, 4, 2, 5, 3, 6]);
    t.deepEqual([...head.fc.bias!.dataSync()], [0.5, -0.5]);
  });
});

test.serial('RLA classifier layers are skipped', async (t) => {
  // The official ImageNet checkpoints come from the classifier: 'module.' keys plus bn2 (norm of the RLA state) and fc.
  const dir = mkdtempSync(join(tmpdir(), 'rladet-weights-'));
  const path = join(dir, 'classifier.safetensors');
  const { tensors } = await readSafetensors(`${RLA}backbone.safetensors`);
  const classifier = new Map([...tensors].map(([name, tensor]) => [`module.${name}`, tensor]));
  for (const name of ['weight', 'bias', 'running_mean', 'running_var']) {
    classifier.set(`module.bn2.${name}`, { dtype: 'F32', shape: [32], data: new Float32Array(32).fill(1) });
  }
  classifier.set('module.fc.weight', { dtype: 'F32', shape: [1000, 2080], data: new Float32Array(1000 * 2080) });
  classifier.set('module.fc.bias', { dtype: 'F32', shape: [1000], data: new Float32Array(1000) });
  await writeSafetensors(path, classifier);

  await withModel(new RLAResNet(RLA_FIXTURE), async (model) => {
    const { report } = await loadWeights(path, model, { target: 'model.backbone' });
    t.is(report.loaded.length, 109);
    t.deepEqual(report.removedPrefixes, ['module.']);
    t.deepEqual([...report.classifierOnly].sort(), ['bn2.bias', 'bn2.running_mean', 'bn2.running_var', 'bn2.weight', 'fc.bias', 'fc.weight']);
    t.deepEqual(report.unexpected, []);
    t.deepEqual(report.missing, []);
  });
});

test.serial('MMDetection-layout detector checkpoint loads whole', async (t) => {
  // Export a detector's weights in PyTorch layouts (OIHW convolutions), as an MMDetection checkpoint stores them.
  setInitSeed(31);
  const dir = mkdtempSync(join(tmpdir(), 'rladet-weights-'));
  const path = join(dir, 'retinanet_mmdet.safetensors');
  const source = DETECTORS.build(tinyRetinaNet(), 'model') as unknown as Module;
  const exported = new Map<string, SafetensorsTensor>();
  await withModel(source, async () => {
    for (const [name, variable] of source.stateDict()) {
      const pytorchLayout = tf.tidy(() => (variable.rank === 4 ? tf.transpose(variable, [3, 2, 0, 1]) : variable.clone()));
      exported.set(name, { dtype: 'F32', shape: [...pytorchLayout.shape], data: pytorchLayout.dataSync() as Float32Array });
      pytorchLayout.dispose();
      if (name.endsWith('.running_var')) exported.set(name.replace('running_var', 'num_batches_tracked'), { dtype: 'I64', shape: [], data: new BigInt64Array([5n]) });
    }
  });
  await writeSafetensors(path, exported);

  setInitSeed(32);
  const config = tinyRetinaNet({}, { init: { type: 'Pretrained', checkpoint: path } });
  await withModel(DETECTORS.build(config, 'model') as unknown as Module, async (model) => {
    const [report] = await initWeights(model);
    t.is(report!.loaded.length, model.stateDict().size);
    t.is(report!.numBatchesTracked.length, 17);
    t.deepEqual(report!.missing, []);
    const head = model.stateDict().get('bbox_head.retina_cls.weight')!;
    const stored = exported.get('bbox_head.retina_cls.weight')!;
    // retina_cls is a 3x3 convolution: OIHW [O, I, 3, 3] in the file, HWIO [3, 3, I, O] in the model.
    t.deepEqual(head.shape, [stored.shape[2], stored.shape[3], stored.shape[1], stored.shape[0]]);
    const expected = tf.tidy(() => tf.transpose(tf.tensor(stored.data as Float32Array, stored.shape), [2, 3, 1, 0]).dataSync());
    t.deepEqual(head.dataSync(), expected);
  });
});

test.serial('shape mismatch names key and shapes', async (t) => {
  // The fixture has bottleneck width 16 in stage 1; the default widthPerGroup 64 gives 64.
  await withModel(new RLAResNet({ layers: [1, 1, 1, 1] }), async (model) => {
    const path = `${RLA}backbone.pth.tar`;
    const before = model.conv1.weight.dataSync().slice();
    await t.throwsAsync(loadWeights(path, model, { target: 'model.backbone' }), {
      instanceOf: CheckpointError,
      message:
        `${path}: shape mismatch for 'stages.0.0.conv1.weight': the checkpoint has [16, 96, 1, 1] but model.backbone expects ` +
        `[64, 96, 1, 1] (OIHW), [1, 1, 96, 64] in rladet's layout. Was the checkpoint saved from another configuration ` +
        `(depth, widthPerGroup, channels or number of classes)?`,
    });
    t.deepEqual(model.conv1.weight.dataSync(), before, 'nothing is copied when a check fails');
  });
});

test.serial('checkpoint of another depth is rejected', async (t) => {
  await withModel(new ResNet(TINY_RESNET), async (model) => {
    const path = `${PYTORCH}resnet_tiny_deeper.pth`;
    await t.throwsAsync(loadWeights(path, model, { target: 'model.backbone' }), {
      instanceOf: CheckpointError,
      message:
        `${path} was saved from a network of another depth than model.backbone: layer3 has 2 blocks in the checkpoint but 1 in the ` +
        `model (blocks per stage: checkpoint [1, 1, 2, 1], model [1, 1, 1, 1]). Set the backbone's depth (or stageBlocks) to ` +
        `match the checkpoint, or use a checkpoint of this depth.`,
    });
  });
});

test.serial('detector checkpoint loads with a prefix', async (t) => {
  const path = `${PYTORCH}detector_style.pth`;
  await withModel(new ResNet(TINY_RESNET), async (model) => {
    await t.throwsAsync(loadWeights(path, model, { target: 'model.backbone' }), {
      instanceOf: CheckpointError,
      message:
        `no tensor of ${path} matches a parameter of model.backbone: checkpoint keys look like 'backbone.conv1.weight', ` +
        `'backbone.bn1.weight' (top level: backbone. neck.), model keys like 'conv1.weight', 'bn1.weight'. ` +
        `The model fits the checkpoint's 'backbone.' part: set that as the prefix.`,
    });
    await t.throwsAsync(loadWeights(path, model, { prefix: 'head' }), {
      instanceOf: CheckpointError,
      message: `prefix 'head.' matches no key of ${path}; its keys start with backbone. neck.`,
    });

    const { file, report } = await loadWeights(path, model, { target: 'model.backbone', prefix: 'backbone' });
    t.is(report.loaded.length, 85);
    t.deepEqual(report.removedPrefixes, ['backbone.']);
    t.deepEqual(report.unexpected, []);
    t.is(file.epoch, 12);
    t.is(file.iteration, 7330);
    t.deepEqual(file.topLevelKeys, ['meta', 'state_dict', 'optimizer']);
  });
});

test.serial('backbone checkpoint into a detector hints init', async (t) => {
  const path = `${PYTORCH}resnet_tiny.pth`;
  const detector = DETECTORS.build(tinyRetinaNet(), 'model');
  await withModel(detector as unknown as Module, async (model) => {
    await t.throwsAsync(loadWeights(path, model), {
      instanceOf: CheckpointError,
      message:
        `no tensor of ${path} matches a parameter of model: checkpoint keys look like 'conv1.weight', 'bn1.weight' ` +
        `(top level: conv1. bn1. layer1. layer2. layer3. layer4. fc.), model keys like 'backbone.conv1.weight', 'backbone.bn1.weight'. ` +
        `The checkpoint fits the model's 'backbone.' part: give it as init: {type: 'Pretrained', checkpoint} on model.backbone instead.`,
    });
  });
});

test.serial('strict load lists missing keys', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rladet-weights-'));
  const path = join(dir, 'partial.safetensors');
  const { tensors } = await readSafetensors(`${RLA}backbone.safetensors`);
  tensors.delete('stage_bns.3.0.weight');
  tensors.delete('stage_bns.3.0.bias');
  await writeSafetensors(path, tensors);
  await withModel(new RLAResNet(RLA_FIXTURE), async (model) => {
    await t.throwsAsync(loadWeights(path, model, { strict: true }), {
      instanceOf: CheckpointError,
      message: `${path} lacks 2 parameters and buffers of model: stage_bns.3.0.{weight,bias}. Was it saved from another configuration?`,
    });
    const { report } = await loadWeights(path, model);
    t.deepEqual(report.missing, ['stage_bns.3.0.weight', 'stage_bns.3.0.bias']);
    t.is(report.loaded.length, 107);
  });
});

test('report table lists every row', (t) => {
  const report: WeightLoadReport = {
    source: 'r50.pth',
    target: 'model.backbone',
    description: "PyTorch zip checkpoint, state dict under 'state_dict'",
    removedPrefixes: ['module.'],
    loaded: ['conv1.weight', 'bn1.weight'],
    missing: ['layer1.0.conv1.weight'],
    unexpected: ['extra.a', 'extra.b'],
    classifierOnly: ['fc.weight', 'fc.bias'],
    numBatchesTracked: ['bn1.num_batches_tracked', 'layer1.0.bn1.num_batches_tracked', 'layer1.0.bn2.num_batches_tracked'],
    nonTensor: [],
  };
  t.is(
    formatWeightLoadReport(report),
    [
      "loaded 2 tensors into model.backbone from r50.pth (PyTorch zip checkpoint, state dict under 'state_dict'; removed key prefix 'module.')",
      '  keys                                         count  names',
      '  missing in checkpoint (left as initialised)      1  layer1.0.conv1.weight',
      '  unexpected in checkpoint (ignored)               2  extra.{a,b}',
      '  skipped: classifier only                         2  fc.{weight,bias}',
      '  skipped: num_batches_tracked of                  3  bn1, layer1.0.{bn1,bn2}',
      '  skipped: not tensors                             0',
    ].join('\n'),
  );
});

test.serial('rladet checkpoints load without conversion', async (t) => {
  setInitSeed(11);
  const dir = mkdtempSync(join(tmpdir(), 'rladet-weights-'));
  const path = join(dir, 'epoch_4.safetensors');
  await withModel(new ResNet(TINY_RESNET), async (source) => {
    await saveCheckpoint(path, source, undefined, { epoch: 4, iteration: 40 });
    setInitSeed(12);
    await withModel(new ResNet(TINY_RESNET), async (target) => {
      const { file, report } = await loadWeights(path, target);
      t.is(file.format, 'rladet');
      t.is(file.epoch, 4);
      t.is(file.iteration, 40);
      t.is(report.loaded.length, source.stateDict().size);
      const loaded = target.stateDict();
      for (const [name, variable] of source.stateDict()) t.deepEqual(loaded.get(name)!.dataSync(), variable.dataSync(), name);
    });
  });
});

test.serial('truncated rladet checkpoint is named truncated', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rladet-weights-'));
  const path = join(dir, 'epoch_1.safetensors');
  await withModel(new ResNet(TINY_RESNET), async (source) => {
    await saveCheckpoint(path, source, undefined, { epoch: 1, iteration: 10 });
  });
  const whole = readFileSync(path);
  const headerLength = Number(whole.readBigUInt64LE(0));
  writeFileSync(path, whole.subarray(0, 100));
  await t.throwsAsync(readWeightFile(path), {
    instanceOf: CheckpointError,
    message: `${path}: invalid safetensors file: header length ${headerLength} exceeds the file size (100 bytes; truncated file?) or the 100 MB limit`,
  });
});

test.serial('conversion by name matches conversion by model', async (t) => {
  const file: WeightFile = await readWeightFile(`${RLA}backbone.pth.tar`);
  const byName = convertByName(file);
  t.is(byName.tensors.size, 109);
  t.is(byName.convolutions.length, 25);
  t.deepEqual(byName.matrices, []);
  t.is(byName.numBatchesTracked.length, 21);
  await withModel(new RLAResNet(RLA_FIXTURE), async (model) => {
    const plan = planWeightLoad(file, model);
    t.is(plan.assignments.length, 109);
    await loadWeights(`${RLA}backbone.pth.tar`, model);
    for (const [name, variable] of model.stateDict()) {
      const converted = byName.tensors.get(name)!;
      t.deepEqual(converted.shape, variable.shape, name);
      t.deepEqual(converted.data, variable.dataSync(), name);
    }
  });
});

/** Returns the config of a small RetinaNet with the tiny ResNet backbone. */
function tinyRetinaNet(backboneExtra: object = {}, detectorExtra: object = {}): { type: string } & Record<string, unknown> {
  return {
    type: 'RetinaNet',
    backbone: { type: 'ResNet', ...TINY_RESNET, frozenStages: -1, ...backboneExtra },
    neck: { type: 'FPN', inChannels: [32, 64, 128, 256], outChannels: 16, startLevel: 1, addExtraConvs: 'on_input', numOuts: 5 },
    bboxHead: { type: 'RetinaHead', numClasses: 2, inChannels: 16, featChannels: 16, stackedConvs: 1 },
    ...detectorExtra,
  };
}

test.serial('Pretrained init loads the backbone', async (t) => {
  const checkpoint = `${PYTORCH}resnet_tiny.pth`;
  const detector = DETECTORS.build(tinyRetinaNet({ init: { type: 'Pretrained', checkpoint } }), 'model') as unknown as Module & { backbone: ResNet };
  await withModel(detector, async (model) => {
    const headBefore = model.stateDict().get('bbox_head.retina_cls.weight')!.dataSync().slice();
    const reports = await initWeights(model);
    t.deepEqual(
      reports.map((report) => [report.target, report.source, report.loaded.length]),
      [['model.backbone', checkpoint, 85]],
    );
    const file = await readWeightFile(checkpoint);
    t.deepEqual(model.backbone.stateDict().get('layer4.0.bn3.running_mean')!.dataSync(), toFloat32Array(file.tensors.get('layer4.0.bn3.running_mean')!));
    t.deepEqual(model.stateDict().get('bbox_head.retina_cls.weight')!.dataSync(), headBefore, 'the head keeps its initialisation');
  });
});

test.serial('detector init overrides backbone init', async (t) => {
  setInitSeed(21);
  const dir = mkdtempSync(join(tmpdir(), 'rladet-weights-'));
  const path = join(dir, 'detector.safetensors');
  const source = DETECTORS.build(tinyRetinaNet(), 'model') as unknown as Module;
  await withModel(source, async () => saveCheckpoint(path, source, undefined, { epoch: 12, iteration: 100 }));
  const sourceState = (await readCheckpoint(path)).tensors;

  setInitSeed(22);
  // The backbone init names a file that does not exist: MMCV skips inits below a Pretrained one, so it must never be read.
  const config = tinyRetinaNet({ init: { type: 'Pretrained', checkpoint: join(dir, 'missing.pth') } }, { init: { type: 'Pretrained', checkpoint: path } });
  await withModel(DETECTORS.build(config, 'model') as unknown as Module, async (model) => {
    const reports = await initWeights(model);
    t.deepEqual(reports.map((report) => report.target), ['model']);
    for (const [name, variable] of model.stateDict()) {
      t.deepEqual(variable.dataSync(), toFloat32Array(sourceState.get(`model.${name}`)!), name);
    }
  });
});

test('init option errors name the fix', (t) => {
  const build = (init: unknown) => () => BACKBONES.build({ type: 'ResNet', ...TINY_RESNET, init } as never, 'model.backbone');
  const cases: Array<[unknown, string]> = [
    [{ type: 'Kaiming' }, `model.backbone.init.type: only 'Pretrained' is supported (layers already initialise themselves when built), got "Kaiming"`],
    [{ type: 'Pretrained' }, 'model.backbone.init.checkpoint: expected the path of a checkpoint file, got undefined'],
    [
      { type: 'Pretrained', checkpoint: 'torchvision://resnet50' },
      "model.backbone.init.checkpoint: 'torchvision://resnet50' is a URL, but rladet reads local files only. Download https://download.pytorch.org/models/resnet50-0676ba61.pth and give its path.",
    ],
    [{ type: 'Pretrained', checkpoint: 'a.pth', prefixes: 'x' }, "model.backbone.init: unknown option 'prefixes' (did you mean 'prefix'?). Known options: type, checkpoint, prefix"],
    ['a.pth', `model.backbone.init: expected {type: 'Pretrained', checkpoint, prefix?}, got "a.pth"`],
  ];
  for (const [init, message] of cases) t.throws(build(init), { instanceOf: ConfigError, message });
});
