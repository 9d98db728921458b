import test from 'ava';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { readCheckpoint } from '../../src/engine/checkpoint.ts';
import { runTool } from './run_tool.ts';

const QUICKSTART = 'configs/quickstart/retinanet_rla_tiny_coco_mini.ts';
const RLA_CHECKPOINT = 'test/fixtures/rla/backbone.pth.tar';

test('convert by name and by config agree', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rladet-convert-'));
  const byName = join(dir, 'by_name.safetensors');
  const byConfig = join(dir, 'by_config.safetensors');

  const plain = runTool('convert_checkpoint.ts', [RLA_CHECKPOINT, byName]);
  t.is(plain.status, 0, plain.stderr);
  t.true(plain.stdout.startsWith(`converted 109 tensors of ${RLA_CHECKPOINT} (PyTorch zip checkpoint, state dict under 'state_dict'; removed key prefix 'module.')\n`), plain.stdout);
  t.true(plain.stdout.includes('  convolution weights, OIHW to HWIO       25  conv1.weight, conv_outs.0.weight, conv_outs.1.weight,'), plain.stdout);
  t.true(plain.stdout.includes('  dropped: num_batches_tracked of         21  bn1, stages.0.0.{bn1,bn2,bn3},'), plain.stdout);

  const configured = runTool('convert_checkpoint.ts', [
    RLA_CHECKPOINT,
    byConfig,
    '--config',
    'configs/rla_resnet/retinanet_rla_r50_fpn_1x_coco.ts',
    '--component',
    'model.backbone',
    '--cfg-options',
    'model.backbone.layers=[1,1,1,1]',
    'model.backbone.widthPerGroup=16',
  ]);
  t.is(configured.status, 0, configured.stderr);
  t.true(configured.stdout.startsWith(`loaded 109 tensors into model.backbone from ${RLA_CHECKPOINT}`), configured.stdout);
  t.true(configured.stdout.includes('  missing in checkpoint (left as initialised)      0\n'), configured.stdout);

  const first = await readCheckpoint(byName);
  const second = await readCheckpoint(byConfig);
  t.is(first.meta.convertedFrom, RLA_CHECKPOINT);
  t.is(second.meta.epoch, 0);
  t.deepEqual([...first.tensors.keys()].sort(), [...second.tensors.keys()].sort());
  for (const [name, tensor] of first.tensors) {
    t.deepEqual(tensor.shape, second.tensors.get(name)!.shape, name);
    t.deepEqual(tensor.data, second.tensors.get(name)!.data, name);
  }
});

test('convert tool rejects bad arguments', (t) => {
  const component = runTool('convert_checkpoint.ts', [RLA_CHECKPOINT, 'out.safetensors', '--component', 'model.neck', '--config', QUICKSTART]);
  t.is(component.status, 2);
  t.true(component.stderr.startsWith("error: --component: 'model.neck' is not one of model, model.backbone\n"), component.stderr);
  const legacy = runTool('convert_checkpoint.ts', ['test/fixtures/pytorch/legacy_format.pth', join(tmpdir(), 'never-written.safetensors')]);
  t.is(legacy.status, 1);
  t.true(legacy.stderr.startsWith("error: CheckpointError: test/fixtures/pytorch/legacy_format.pth was written by torch.save in PyTorch's legacy format"), legacy.stderr);
  const classifier = runTool('convert_checkpoint.ts', [RLA_CHECKPOINT, join(tmpdir(), 'never-written.safetensors'), '--config', 'configs/imagenet/rla_resnet50.ts']);
  t.is(classifier.status, 1);
  t.true(
    classifier.stderr.includes(
      "error: ConfigError: configs/imagenet/rla_resnet50.ts: model.type 'ImageClassifier' is a classifier, not a detector; convert its backbone with --component model.backbone\n",
    ),
    classifier.stderr,
  );
  const before = readFileSync(RLA_CHECKPOINT);
  const same = runTool('convert_checkpoint.ts', [RLA_CHECKPOINT, `./${RLA_CHECKPOINT}`]);
  t.is(same.status, 2);
  t.true(same.stderr.startsWith(`error: IN and OUT are the same file (${RLA_CHECKPOINT}); write the converted checkpoint to another path\n`), same.stderr);
  t.true(readFileSync(RLA_CHECKPOINT).equals(before));
});

test('test tool takes the checkpoint from --load-from', (t) => {
  const both = runTool('test.ts', [QUICKSTART, 'a.pth', '--load-from', 'b.pth', '--eval', 'bbox']);
  t.is(both.status, 2);
  t.true(both.stderr.startsWith('error: give the checkpoint either as CHECKPOINT or as --load-from, not both\n'), both.stderr);
  const none = runTool('test.ts', [QUICKSTART, '--eval', 'bbox']);
  t.is(none.status, 2);
  t.true(none.stderr.startsWith('error: missing CHECKPOINT (or --load-from CHECKPOINT)\n'), none.stderr);
  const missing = runTool('test.ts', [QUICKSTART, '--load-from', 'missing.pth', '--eval', 'bbox', '--backend', 'cpu']);
  t.is(missing.status, 1);
  t.true(missing.stderr.includes('CheckpointError: checkpoint missing.pth cannot be read: ENOENT'), missing.stderr);
});

test('train loads init and --load-from first', (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'rladet-pretrained-'));
  // A backbone checkpoint given to the whole detector: no key matches, and the error names the fix.
  const loadFrom = runTool('train.ts', [QUICKSTART, '--work-dir', workDir, '--backend', 'cpu', '--load-from', 'test/fixtures/pytorch/resnet_tiny.pth']);
  t.is(loadFrom.status, 1);
  t.true(loadFrom.stderr.includes('CheckpointError: no tensor of test/fixtures/pytorch/resnet_tiny.pth matches a parameter of model:'), loadFrom.stderr);
  t.true(loadFrom.stderr.includes("give it as init: {type: 'Pretrained', checkpoint} on model.backbone instead."), loadFrom.stderr);

  const init = runTool('train.ts', [
    QUICKSTART,
    '--work-dir',
    workDir,
    '--backend',
    'cpu',
    '--cfg-options',
    'model.backbone.init={"type":"Pretrained","checkpoint":"missing_backbone.pth"}',
  ]);
  t.is(init.status, 1);
  t.true(init.stderr.includes('CheckpointError: checkpoint missing_backbone.pth cannot be read: ENOENT'), init.stderr);
});
