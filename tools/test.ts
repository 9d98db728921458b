/**
 * Tests a trained detector: COCO results file and COCO box mAP.
 *
 *   tsx tools/test.ts CONFIG (CHECKPOINT | --load-from CHECKPOINT) [--out results.json] [--eval bbox]
 *       [--backend NAME] [--cfg-options key=value ...]
 */
import { loadDetectionConfig } from '../src/apis/config_loading.ts';
import { testFromConfig } from '../src/apis/test.ts';
import { UsageError, parseBackendOption, parseCommandLine, runMain, takeMultiValueOption } from '../src/utils/cli.ts';

const USAGE = `usage: tsx tools/test.ts CONFIG CHECKPOINT [options]
       tsx tools/test.ts CONFIG --load-from CHECKPOINT [options]

Runs the detector of CONFIG with the weights of CHECKPOINT over the config's data.test set.
CHECKPOINT is an rladet checkpoint, or a PyTorch (.pth) or safetensors checkpoint of the whole
detector with MMDetection's key names; every parameter of the model must be in it.

options:
  --load-from CHECKPOINT   the same as the CHECKPOINT argument, as in tools/train.ts
  --out FILE               write the detections as a COCO results json (bbox in [x, y, w, h])
  --eval bbox              evaluate against data.test's annotations and print the COCO table
  --backend NAME           auto | tensorflow | wasm | cpu (default: the config's backend, else auto)
  --cfg-options K=V ...    override config values, e.g. data.test.annFile=other.json
  -h, --help               show this help`;

async function main(): Promise<void> {
  const { rest, values: overrides } = takeMultiValueOption(process.argv.slice(2), '--cfg-options');
  const { values, positionals } = parseCommandLine({
    args: rest,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      eval: { type: 'string' },
      'load-from': { type: 'string' },
      backend: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (positionals.length < 1 || positionals.length > 2) {
    throw new UsageError(`expected CONFIG and CHECKPOINT, got ${positionals.length} arguments`);
  }

  const loadFrom = values['load-from'];
  if (positionals.length === 2 && loadFrom !== undefined) throw new UsageError('give the checkpoint either as CHECKPOINT or as --load-from, not both');
  const checkpoint = positionals[1] ?? loadFrom;
  if (checkpoint === undefined) throw new UsageError('missing CHECKPOINT (or --load-from CHECKPOINT)');

  if (values.eval !== undefined && values.eval !== 'bbox') {
    throw new UsageError(`--eval: '${values.eval}' is not supported (supported: bbox)`);
  }
  if (values.out === undefined && values.eval === undefined) {
    throw new UsageError('nothing to do: give --out FILE and/or --eval bbox');
  }
  const backend = parseBackendOption(values.backend);
  const configPath = positionals[0]!;
  const config = await loadDetectionConfig(configPath, overrides);
  const { evaluation } = await testFromConfig(config, {
    checkpoint,
    evaluate: values.eval === 'bbox',
    ...(values.out === undefined ? {} : { out: values.out }),
    ...(backend === undefined ? {} : { backend }),
  });
  if (evaluation !== undefined) {
    process.stdout.write(evaluation.table + '\n');
    process.stdout.write(`bbox_mAP_copypaste: ${evaluation.copypaste}\n`);
    process.stdout.write(JSON.stringify(evaluation.metrics) + '\n');
  }
}

runMain(main, USAGE);
