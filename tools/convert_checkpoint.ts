/**
 * Converts a checkpoint of any supported format into an rladet checkpoint and prints how the
 * keys were mapped.
 *
 *   tsx tools/convert_checkpoint.ts IN OUT [--prefix PREFIX] [--config CONFIG [--component model|model.backbone]]
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';

import { initBackend } from '../src/backends/index.ts';
import { applyOverrides, loadConfig } from '../src/config/config.ts';
import { saveCheckpoint, saveModelTensors } from '../src/engine/checkpoint.ts';
import { applyWeightLoad, batchNormNames, convertByName, formatWeightLoadReport, planWeightLoad, summarizeKeys } from '../src/engine/weights.ts';
import { describeWeightFile, readWeightFile } from '../src/io/weight_file.ts';
import type { Module } from '../src/nn/module.ts';
import { BACKBONES, CLASSIFIERS, DETECTORS } from '../src/registry/index.ts';
import { ConfigError } from '../src/utils/errors.ts';
import { UsageError, parseCommandLine, runMain, takeMultiValueOption } from '../src/utils/cli.ts';
import '../src/register_all.ts';

const USAGE = `usage: tsx tools/convert_checkpoint.ts IN OUT [options]

Converts IN (a PyTorch checkpoint: .pth, .pth.tar or .pt from torch.save; a safetensors file;
or an rladet checkpoint) into an rladet checkpoint OUT (safetensors), and prints the mapping.

Without --config, keys are converted by name: a leading 'module.' is removed, num_batches_tracked
counters are dropped, 4-D tensors go from OIHW to HWIO and 2-D tensors from [out, in] to [in, out].
With --config, the config's model is built and IN is loaded into it as init: {type: 'Pretrained'}
would load it (missing and unexpected keys listed, shapes checked), and OUT holds that model's
weights.

options:
  --prefix PREFIX          use only the keys under PREFIX (e.g. 'backbone.'), removing it
  --config CONFIG          a config file whose model receives the weights
  --component PATH         with --config: 'model' (default, the detector) or 'model.backbone'
  --cfg-options K=V ...    with --config: override config values
  -h, --help               show this help`;

const COMPONENTS = ['model', 'model.backbone'] as const;

/** Builds the config's detector or backbone. */
async function buildComponent(configPath: string, component: string, overrides: readonly string[]): Promise<Module> {
  const config = await loadConfig(configPath);
  applyOverrides(config, overrides);
  const model = config['model'] as ({ type: string; backbone?: { type: string } } & Record<string, unknown>) | undefined;
  if (model === undefined) throw new ConfigError(`${configPath}: missing top-level 'model'`);
  if (component === 'model') {
    if (CLASSIFIERS.has(model.type)) {
      throw new ConfigError(`${configPath}: model.type '${model.type}' is a classifier, not a detector; convert its backbone with --component model.backbone`);
    }
    return DETECTORS.build(model, 'model');
  }
  if (model.backbone === undefined) throw new ConfigError(`${configPath}: model has no 'backbone'`);
  return BACKBONES.build(model.backbone, 'model.backbone');
}

/** Checks whether two paths name the same existing file (OUT may not exist yet). */
function isSameFile(first: string, second: string): boolean {
  if (resolve(first) === resolve(second)) return true;
  try {
    const [a, b] = [statSync(first), statSync(second)];
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const { rest, values: overrides } = takeMultiValueOption(process.argv.slice(2), '--cfg-options');
  const { values, positionals } = parseCommandLine({
    args: rest,
    allowPositionals: true,
    options: {
      prefix: { type: 'string' },
      config: { type: 'string' },
      component: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (positionals.length !== 2) throw new UsageError(`expected IN and OUT, got ${positionals.length} arguments`);
  const component = values.component ?? 'model';
  if (!(COMPONENTS as readonly string[]).includes(component)) {
    throw new UsageError(`--component: '${component}' is not one of ${COMPONENTS.join(', ')}`);
  }
  if (values.config === undefined && (values.component !== undefined || overrides.length > 0)) {
    throw new UsageError('--component and --cfg-options need --config');
  }
  const [input, output] = positionals as [string, string];
  if (isSameFile(input, output)) {
    throw new UsageError(`IN and OUT are the same file (${input}); write the converted checkpoint to another path`);
  }
  const prefix = values.prefix === undefined ? {} : { prefix: values.prefix };
  // A one-off conversion can afford the CRC-32 check that loading skips.
  const file = await readWeightFile(input, { verifyChecksums: true });

  if (values.config !== undefined) {
    // Building the model needs a backend; the cpu backend is enough to copy weights.
    await initBackend('cpu');
    const model = await buildComponent(values.config, component, overrides);
    try {
      const plan = planWeightLoad(file, model, { target: component, ...prefix });
      applyWeightLoad(plan);
      await saveCheckpoint(output, model, undefined, { epoch: 0, iteration: 0, convertedFrom: input });
      process.stdout.write(formatWeightLoadReport(plan.report) + '\n');
    } finally {
      model.dispose();
    }
  } else {
    const conversion = convertByName(file, prefix);
    await saveModelTensors(output, conversion.tensors, { epoch: 0, iteration: 0, convertedFrom: input });
    const removed = conversion.removedPrefixes.map((item) => `'${item}'`).join(' and ') || 'none';
    const rows: Array<[string, string[]]> = [
      ['convolution weights, OIHW to HWIO', conversion.convolutions],
      ['2-D weights, [out, in] to [in, out]', conversion.matrices],
      ['dropped: num_batches_tracked of', batchNormNames(conversion.numBatchesTracked)],
      ['dropped: not tensors', conversion.nonTensor],
    ];
    const width = Math.max(...rows.map(([label]) => label.length));
    const lines = [
      `converted ${conversion.tensors.size} tensors of ${input} (${describeWeightFile(file)}; removed key prefix ${removed})`,
      ...rows.map(([label, keys]) => `  ${label.padEnd(width)}  ${String(keys.length).padStart(5)}  ${summarizeKeys(keys)}`.trimEnd()),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }
  process.stdout.write(`wrote ${output}\n`);
}

runMain(main, USAGE);
