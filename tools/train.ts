/**
 * Trains a detector from a config file.
 *
 *   tsx tools/train.ts CONFIG [--work-dir DIR] [--resume[=CHECKPOINT]] [--load-from CHECKPOINT]
 *       [--backend auto|tensorflow|wasm|cpu] [--workers N|auto] [--no-validate] [--cfg-options key=value ...]
 */
import { defaultWorkDir, loadDetectionConfig } from '../src/apis/config_loading.ts';
import { trainFromConfig } from '../src/apis/train.ts';
import { findLatestCheckpoint } from '../src/engine/checkpoint.ts';
import { UsageError, parseBackendOption, parseCommandLine, parseWorkersOption, runMain, takeMultiValueOption } from '../src/utils/cli.ts';

const USAGE = `usage: tsx tools/train.ts CONFIG [options]

Trains the detector of CONFIG (a TypeScript config file, e.g. configs/rla_resnet/retinanet_rla_r50_fpn_1x_coco.ts).

options:
  --work-dir DIR            where logs, metrics.jsonl, config.json and checkpoints go
                            (default: work_dirs/<config name>)
  --resume[=CHECKPOINT]     continue a run: from CHECKPOINT, or from the newest epoch_N.safetensors
                            in the work dir; restores weights, optimizer state, epoch and iteration
  --load-from CHECKPOINT    start from the weights of CHECKPOINT (epoch 0, fresh optimizer): an rladet
                            checkpoint, or a PyTorch (.pth) or safetensors checkpoint of the whole
                            detector; keys missing from it keep their initial values and are listed
  --backend NAME            auto | tensorflow | wasm | cpu (default: the config's backend, else auto:
                            tfjs-node-gpu, then tfjs-node, then wasm)
  --workers N|auto          train data-parallel in N worker threads, one model replica each: each step
                            splits the batch between them and averages their gradients. auto: one per
                            CPU core, at most data.imagesPerBatch, on wasm and cpu, and 1 on
                            tensorflow, which uses every core itself (default: the config's
                            runner.workers, else 1)
  --no-validate             skip the evaluation after each epoch
  --cfg-options K=V ...     override config values, e.g. data.imagesPerBatch=4 runner.maxEpochs=1
                            (values are parsed as JSON when they parse, else kept as strings)
  -h, --help                show this help`;

async function main(): Promise<void> {
  const { rest, values: overrides } = takeMultiValueOption(process.argv.slice(2), '--cfg-options');
  const argv = rest.map((arg) => (arg === '--resume' ? '--resume=latest' : arg));
  const { values, positionals } = parseCommandLine({
    args: argv,
    allowPositionals: true,
    options: {
      'work-dir': { type: 'string' },
      resume: { type: 'string' },
      'load-from': { type: 'string' },
      backend: { type: 'string' },
      workers: { type: 'string' },
      'no-validate': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (positionals.length !== 1) {
    // The usual slips: '--resume PATH' (PATH becomes a positional) and a K=V override without '='.
    const extra = positionals.slice(1).map((arg) => `'${arg}'`).join(', ');
    const hints: string[] = [];
    if (rest.includes('--resume')) hints.push('--resume takes its checkpoint as --resume=PATH');
    const args = process.argv.slice(2);
    if (args.includes('--cfg-options') && positionals.slice(1).some((arg) => !arg.includes('='))) {
      hints.push('--cfg-options takes key.path=value pairs');
    }
    const hint = positionals.length > 1 ? ` (extra: ${extra}${hints.length > 0 ? `; ${hints.join('; ')}` : ''})` : '';
    throw new UsageError(`expected one CONFIG argument, got ${positionals.length}${hint}`);
  }
  const backend = parseBackendOption(values.backend);
  const workers = parseWorkersOption(values.workers);
  const configPath = positionals[0]!;
  const config = await loadDetectionConfig(configPath, overrides);
  const workDir = values['work-dir'] ?? defaultWorkDir(configPath);
  process.once('SIGINT', () => {
    const checkpoint = findLatestCheckpoint(workDir);
    const next = checkpoint === undefined ? 'no checkpoint was written yet' : `the newest checkpoint is ${checkpoint}; continue with --resume`;
    process.stderr.write(`\ninterrupted: ${next}\n`);
    process.exit(130);
  });
  await trainFromConfig(config, {
    workDir,
    validate: !values['no-validate'],
    ...(values.resume === undefined ? {} : { resumeFrom: values.resume }),
    ...(values['load-from'] === undefined ? {} : { loadFrom: values['load-from'] }),
    ...(backend === undefined ? {} : { backend }),
    ...(workers === undefined ? {} : { workers }),
  });
}

runMain(main, USAGE);
