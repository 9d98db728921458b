import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { runTool } from './run_tool.ts';

test('train help lists every option', (t) => {
  const { status, stdout } = runTool('train.ts', ['--help']);
  t.is(status, 0);
  for (const option of ['--work-dir', '--resume', '--load-from', '--backend', '--no-validate', '--cfg-options']) t.true(stdout.includes(option), option);
});

test('train rejects unknown backend with usage', (t) => {
  const { status, stderr } = runTool('train.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', '--backend', 'webgl']);
  t.is(status, 2);
  t.true(stderr.startsWith("error: --backend: 'webgl' is not one of auto, tensorflow, wasm, cpu\n\nusage:"), stderr);
});

test('train names a missing config file', (t) => {
  const { status, stderr } = runTool('train.ts', ['configs/missing.ts']);
  t.is(status, 1);
  t.is(stderr, 'error: ConfigError: config file not found: configs/missing.ts\n');
});

test('unknown backbone type lists registered names', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rladet-cli-'));
  const config = join(dir, 'typo.ts');
  writeFileSync(
    config,
    `import { extend } from '${resolve('src/config/config.ts')}';\n` +
      `import base from '${resolve('configs/quickstart/retinanet_rla_tiny_coco_mini.ts')}';\n` +
      `export default extend(base, { model: { backbone: { type: 'RLAResnet' } } } as never);\n`,
  );
  const workDir = join(dir, 'work');
  const { status, stderr } = runTool('train.ts', [config, '--work-dir', workDir, '--backend', 'cpu']);
  t.is(status, 1);
  const message = "RegistryError: model.backbone.type: 'RLAResnet' is not registered in BACKBONES. Did you mean 'RLAResNet'? Registered: RLAResNet, ResNet";
  t.true(stderr.includes(message), stderr);
  // The work dir's log records why the run stopped.
  const logs = readdirSync(workDir).filter((name) => name.endsWith('.log'));
  t.is(logs.length, 1);
  const lastLine = readFileSync(join(workDir, logs[0]!), 'utf8').trimEnd().split('\n').pop()!;
  t.regex(lastLine, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ERROR train: training stopped: /);
  t.true(lastLine.endsWith(message), lastLine);
});

test('cfg-options typo is reported before training', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rladet-cli-'));
  const { status, stderr } = runTool('train.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', '--work-dir', dir, '--cfg-options', 'model.bbox_head.numClasses=3']);
  t.is(status, 1);
  t.true(stderr.includes("--cfg-options model.bbox_head.numClasses: 'model.bbox_head' does not exist in the config (closest: 'model.bboxHead')"), stderr);
  const leaf = runTool('train.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', '--work-dir', dir, '--cfg-options', 'runner.maxEpoch=1']);
  t.is(leaf.status, 1);
  t.true(leaf.stderr.includes("runner: unknown option 'maxEpoch' (did you mean 'maxEpochs'?)"), leaf.stderr);
  t.deepEqual(readdirSync(dir), [], 'nothing written to the work dir');
});

test('test tool needs an action and a checkpoint', (t) => {
  const noAction = runTool('test.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', 'x.safetensors']);
  t.is(noAction.status, 2);
  t.true(noAction.stderr.startsWith('error: nothing to do: give --out FILE and/or --eval bbox'));
  const missing = runTool('test.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', 'missing.safetensors', '--eval', 'bbox', '--backend', 'cpu']);
  t.is(missing.status, 1);
  t.true(missing.stderr.includes('CheckpointError: checkpoint missing.safetensors cannot be read: ENOENT'), missing.stderr);
});

test('train explains extra arguments', (t) => {
  const resume = runTool('train.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', '--resume', 'epoch_1.safetensors']);
  t.is(resume.status, 2);
  t.true(
    resume.stderr.startsWith("error: expected one CONFIG argument, got 2 (extra: 'epoch_1.safetensors'; --resume takes its checkpoint as --resume=PATH)\n"),
    resume.stderr,
  );
  const override = runTool('train.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', '--cfg-options', 'runner.maxEpochs']);
  t.is(override.status, 2);
  t.true(
    override.stderr.startsWith("error: expected one CONFIG argument, got 2 (extra: 'runner.maxEpochs'; --cfg-options takes key.path=value pairs)\n"),
    override.stderr,
  );
});

test('file system errors print no stack', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rladet-cli-'));
  const file = join(dir, 'file.txt');
  writeFileSync(file, '');
  const { status, stderr } = runTool('train.ts', ['configs/quickstart/retinanet_rla_tiny_coco_mini.ts', '--work-dir', join(file, 'work'), '--backend', 'cpu']);
  t.is(status, 1);
  t.regex(stderr, /^error: (ENOTDIR|EEXIST): [^\n]*\n$/);
});

test('interrupted training names the resume path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rladet-cli-'));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', resolve('tools/train.ts'), 'configs/quickstart/retinanet_rla_tiny_coco_mini.ts', '--work-dir', dir, '--backend', 'cpu', '--workers', '1'],
    // Info level, whatever the suite sets, because the test waits for the first info line.
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RLADET_LOG_LEVEL: 'info' } },
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  // The first log line comes after tools/train.ts has installed its SIGINT handler.
  const started = new Promise<void>((resolveStarted) => {
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      if (stderr.includes('train: model RetinaNet')) resolveStarted();
    });
  });
  const exited = new Promise<number | null>((resolveExit) => child.on('exit', (code) => resolveExit(code)));
  await Promise.race([started, exited]);
  t.true(stderr.includes('train: model RetinaNet'), `the tool stopped before training started: ${stderr}`);
  child.kill('SIGINT');
  t.is(await exited, 130);
  t.true(stderr.endsWith('\ninterrupted: no checkpoint was written yet\n'), stderr);
});
