import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

import { countComplexity, formatComplexityTable, paperFigures, UNREGISTERED_LAYERS } from '../../../src/analysis/complexity.ts';
import { registerWasmTrainingKernels } from '../../../src/backends/wasm_kernels.ts';
import type { ClassifierConfig } from '../../../src/config/component_types.ts';
import { loadConfig } from '../../../src/config/config.ts';
import '../../../src/models/backbones/resnet.ts';
import '../../../src/models/backbones/rla_resnet.ts';
import '../../../src/models/classifiers/image_classifier.ts';
import { BatchNorm2d, Conv2d, Linear, setLayerCallObserver } from '../../../src/nn/layers.ts';
import { Module } from '../../../src/nn/module.ts';
import { CLASSIFIERS } from '../../../src/registry/index.ts';

const REPO_ROOT = new URL('../../../', import.meta.url).pathname;

test.before(async () => {
  await tf.setBackend('cpu');
});

/** conv 3x3/2 (3 -> 4, no bias) -> BN -> global average pool -> fc (4 -> 5). */
class SmallNet extends Module {
  readonly conv = this.addModule('conv', new Conv2d({ inChannels: 3, outChannels: 4, kernelSize: 3, stride: 2, padding: 1 }));
  readonly norm = this.addModule('norm', new BatchNorm2d(4));
  readonly fc = this.addModule('fc', new Linear({ inFeatures: 4, outFeatures: 5 }));
  /** Not registered as a child, so its work is reported under UNREGISTERED_LAYERS. */
  readonly hidden = new Conv2d({ inChannels: 3, outChannels: 1, kernelSize: 1 });
  modesSeen: boolean[] = [];

  forward(images: tf.Tensor4D): tf.Tensor2D {
    this.modesSeen.push(this.training);
    return tf.tidy(() => {
      this.hidden.forward(images);
      const features = this.norm.forward(this.conv.forward(images));
      return this.fc.forward(tf.mean(features, [1, 2]) as tf.Tensor2D);
    });
  }

  override dispose(): void {
    super.dispose();
    this.hidden.dispose();
  }
}

test('hand-computed counts of a small net', (t) => {
  const model = new SmallNet();
  try {
    model.fc.freeze();
    model.train();
    const before = tf.memory().numTensors;
    const report = countComplexity(model, [9, 7]);
    t.is(tf.memory().numTensors, before);

    // The conv output has 5 x 4 pixels x 4 channels, each costing 3 * 3 * 3 multiply-adds.
    // The fc costs 4 * 5, and the hidden 1x1 conv 9 * 7 * 3.
    const byPath = new Map(report.modules.map((module) => [module.path, module]));
    t.is(byPath.get('conv')?.multiplyAdds, 5 * 4 * 4 * 27);
    t.is(byPath.get('fc')?.multiplyAdds, 20);
    t.is(byPath.get(UNREGISTERED_LAYERS)?.multiplyAdds, 189);
    t.is(report.multiplyAdds, 2160 + 20 + 189);
    t.is(byPath.get('')?.multiplyAdds, 2160 + 20);
    t.is(report.normElements, 80);
    t.is(byPath.get('norm')?.normElements, 80);

    // Parameters: conv 3 * 3 * 3 * 4, norm 2 * 4, fc 4 * 5 + 5 (frozen).
    t.is(report.params, 108 + 8 + 25);
    t.is(report.trainableParams, 108 + 8);
    t.is(byPath.get('fc')?.trainableParams, 0);
    t.is(byPath.get('conv')?.depth, 1);

    t.deepEqual(model.modesSeen, [false], 'the pass runs in inference mode');
    t.true(model.training, 'training mode is restored');
    t.is(setLayerCallObserver(undefined), undefined, 'the observer is removed');
  } finally {
    model.dispose();
  }
});

test('forwardDummy is preferred over forward', (t) => {
  const calls: string[] = [];
  class Detector extends SmallNet {
    forwardDummy(images: tf.Tensor4D): void {
      calls.push('forwardDummy');
      tf.dispose(this.forward(images));
    }
  }
  const model = new Detector();
  try {
    const report = countComplexity(model, [8, 8]);
    t.deepEqual(calls, ['forwardDummy']);
    t.is(report.modules.find((module) => module.path === 'conv')?.multiplyAdds, 4 * 4 * 4 * 27);
  } finally {
    model.dispose();
  }
});

test('table names units and totals', (t) => {
  const model = new SmallNet();
  try {
    const table = formatComplexityTable(countComplexity(model, [9, 7]), 1);
    const lines = table.split('\n');
    t.regex(lines[0]!, /^module +params +trainable +multiply-adds$/);
    t.true(lines.some((line) => /^conv +108 +108 +2,160$/.test(line)));
    t.true(lines.some((line) => /^total +141 +141 +2,369$/.test(line)));
    t.true(table.includes('multiply-adds (conv + fc): 2,369 = 0.000 G (10^9)'));
    t.true(table.includes('params 0.00 M (2^20)'));
  } finally {
    model.dispose();
  }
});

test('paper figures use binary prefixes and norm ops', (t) => {
  const figures = paperFigures({ params: 3 * 2 ** 20, multiplyAdds: 2 ** 30, normElements: 2 ** 28 });
  t.is(figures.paramsMebi, 3);
  t.is(figures.operationsGibi, 1.5);
});

test.serial('ImageNet configs match official counts', async (t) => {
  // Exact counts of torchvision 0.14 and the official RLA-Net classifiers at 224x224, and the
  // RLA-Net paper's figures for its two RLA-ResNet rows.
  const cases: Array<[string, number, number, [string, string] | undefined]> = [
    ['resnet50', 25_557_032, 4_089_184_256, undefined],
    ['resnet101', 44_549_160, 7_801_405_440, undefined],
    ['rla_resnet50', 25_870_696, 4_454_648_064, ['24.67', '4.17']],
    ['rla_resnet101', 45_003_176, 8_334_055_680, ['42.92', '7.79']],
  ];
  // The wasm backend runs these 224x224 passes many times faster than the cpu backend.
  await tf.setBackend('wasm');
  registerWasmTrainingKernels();
  try {
    for (const [name, params, multiplyAdds, paper] of cases) {
      const config = await loadConfig(join(REPO_ROOT, 'configs', 'imagenet', `${name}.ts`));
      t.deepEqual(config['inputShape'], [224, 224], name);
      const model = CLASSIFIERS.build(config['model'] as ClassifierConfig, 'model');
      try {
        const report = countComplexity(model, [224, 224]);
        t.is(report.params, params, `${name} parameters`);
        t.is(report.multiplyAdds, multiplyAdds, `${name} multiply-adds`);
        if (paper !== undefined) {
          const figures = paperFigures(report);
          t.is(figures.paramsMebi.toFixed(2), paper[0], `${name} paper parameters`);
          t.is(figures.operationsGibi.toFixed(2), paper[1], `${name} paper FLOPs`);
        }
      } finally {
        model.dispose();
      }
    }
  } finally {
    await tf.setBackend('cpu');
  }
});

/** Runs tools/get_flops.ts in a child process. */
function runGetFlops(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'tools', 'get_flops.ts'), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, RLADET_LOG_LEVEL: 'warn' },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('get_flops prints JSON and table', async (t) => {
  const folder = await mkdtemp(join(tmpdir(), 'rladet-get-flops-'));
  try {
    const modelConfig = { type: 'ImageClassifier', backbone: { type: 'ResNet', stageBlocks: [1, 1, 1, 1], baseChannels: 8 }, numClasses: 10 };
    const configPath = join(folder, 'tiny.ts');
    await writeFile(configPath, `export default ${JSON.stringify({ model: modelConfig, inputShape: [32, 32] })};\n`);

    const model = CLASSIFIERS.build(modelConfig as ClassifierConfig, 'model');
    const expected = countComplexity(model, [40, 24]);
    model.dispose();

    const json = runGetFlops([configPath, '--shape', '40', '24', '--json', '--backend', 'cpu']);
    t.is(json.status, 0, json.stderr);
    const output = JSON.parse(json.stdout) as Record<string, unknown>;
    t.deepEqual(output['inputShape'], [40, 24]);
    t.is(output['params'], expected.params);
    t.is(output['flops'], expected.multiplyAdds);
    t.is(output['flopsUnit'], 'multiply-adds');
    t.is(output['normElements'], expected.normElements);
    t.deepEqual(
      (output['modules'] as Array<{ path: string }>).map((module) => module.path),
      ['backbone', 'backbone.conv1', 'backbone.bn1', 'backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4', 'fc'],
    );

    const table = runGetFlops([configPath, '--depth', '1', '--backend', 'cpu']);
    t.is(table.status, 0, table.stderr);
    t.true(table.stdout.includes('input: 1 x 32 x 32 (batch x height x width)'), 'inputShape from the config');
    t.regex(table.stdout, /^fc +2,570 +2,570 +2,560$/m);

    const usage = runGetFlops([configPath, '--shape', 'wide']);
    t.is(usage.status, 2);
    t.true(usage.stderr.startsWith("error: --shape: expected a positive integer, got 'wide'"), usage.stderr);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});
