import test from 'ava';

import { loadDetectionConfig } from '../../../src/apis/config_loading.ts';
import { applyOverrides, checkOptionKeys, extend, loadConfig, parseOverrideValue, replace } from '../../../src/config/config.ts';
import { ConfigError } from '../../../src/utils/errors.ts';

test('extend merges objects and replaces arrays', (t) => {
  const base = { a: { b: 1, c: [1, 2, 3] }, d: 'x' };
  const merged = extend(base, { a: { c: [9] } });
  t.deepEqual(merged, { a: { b: 1, c: [9] }, d: 'x' });
  t.deepEqual(base, { a: { b: 1, c: [1, 2, 3] }, d: 'x' }, 'base is not modified');
});

test('replace drops the base subtree', (t) => {
  const base = { model: { backbone: { type: 'ResNet', depth: 50, frozenStages: 1 } } };
  const merged = extend(base, { model: { backbone: replace({ type: 'ResNet', depth: 101 }) } });
  t.deepEqual(merged, { model: { backbone: { type: 'ResNet', depth: 101 } } });
});

test('leaf configs swap backbone in one line', async (t) => {
  const r50 = await loadDetectionConfig('configs/retinanet/retinanet_r50_fpn_1x_coco.ts');
  const rla50 = await loadDetectionConfig('configs/rla_resnet/retinanet_rla_r50_fpn_1x_coco.ts');
  const rla101 = await loadDetectionConfig('configs/rla_resnet/retinanet_rla_r101_fpn_1x_coco.ts');
  const r101 = await loadDetectionConfig('configs/retinanet/retinanet_r101_fpn_1x_coco.ts');
  const backbone = (c: typeof r50) => c.model.backbone as unknown as Record<string, unknown>;
  t.deepEqual(backbone(rla50), { ...backbone(r50), type: 'RLAResNet' });
  t.deepEqual(backbone(rla101), { ...backbone(r50), type: 'RLAResNet', depth: 101 });
  t.deepEqual(backbone(r101), { ...backbone(r50), depth: 101 });
  // Everything but the backbone is shared.
  t.deepEqual({ ...rla50, model: { ...rla50.model, backbone: null } }, { ...r50, model: { ...r50.model, backbone: null } });
  // RetinaNet's 1x settings on top of the shared schedule.
  t.is(r50.optimizer.lr, 0.01);
  t.deepEqual(r50.optimizerConfig, { gradClip: { maxNorm: 35 } });
  t.deepEqual(r50.lrConfig, { policy: 'step', warmup: 'linear', warmupIters: 500, warmupRatio: 0.001, step: [8, 11] });
  t.is(r50.runner.maxEpochs, 12);
  t.is(r50.data.train.type, 'CocoDataset');
});

test('cfg-options override nested values', async (t) => {
  const config = await loadConfig('configs/retinanet/retinanet_r50_fpn_1x_coco.ts');
  applyOverrides(config, ['model.backbone.depth=101', 'data.imagesPerBatch=4', 'lrConfig.step=[7,10]', 'model.neck.addExtraConvs=on_output']);
  const model = config['model'] as { backbone: { depth: number }; neck: { addExtraConvs: string } };
  t.is(model.backbone.depth, 101);
  t.is(model.neck.addExtraConvs, 'on_output');
  t.is((config['data'] as { imagesPerBatch: number }).imagesPerBatch, 4);
  t.deepEqual((config['lrConfig'] as { step: number[] }).step, [7, 10]);
});

test('cfg-options typo names closest key', async (t) => {
  const config = await loadConfig('configs/retinanet/retinanet_r50_fpn_1x_coco.ts');
  t.throws(() => applyOverrides(config, ['model.backbon.depth=101']), {
    instanceOf: ConfigError,
    message: "--cfg-options model.backbon.depth: 'model.backbon' does not exist in the config (closest: 'model.backbone')",
  });
  t.throws(() => applyOverrides(config, ['model.backbone']), { message: "--cfg-options: expected key.path=value, got 'model.backbone'" });
});

test('override values parse as JSON or strings', (t) => {
  t.is(parseOverrideValue('0.5'), 0.5);
  t.is(parseOverrideValue('true'), true);
  t.is(parseOverrideValue('null'), null);
  t.deepEqual(parseOverrideValue('[1,2]'), [1, 2]);
  t.deepEqual(parseOverrideValue('1,2,3'), [1, 2, 3]);
  t.is(parseOverrideValue('data/coco/'), 'data/coco/');
});

test('unknown option names closest option', (t) => {
  t.throws(() => checkOptionKeys('model.backbone', { depht: 50 }, ['depth', 'frozenStages']), {
    instanceOf: ConfigError,
    message: "model.backbone: unknown option 'depht' (did you mean 'depth'?). Known options: depth, frozenStages",
  });
});

test('missing config file and missing sections', async (t) => {
  await t.throwsAsync(loadConfig('configs/nope.ts'), { instanceOf: ConfigError, message: 'config file not found: configs/nope.ts' });
  await t.throwsAsync(loadDetectionConfig('configs/imagenet/rla_resnet50.ts'), {
    instanceOf: ConfigError,
    message: "configs/imagenet/rla_resnet50.ts: missing top-level 'data' (is this a detection config?)",
  });
});
