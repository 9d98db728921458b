/**
 * The quick start: trains a small RLA-ResNet RetinaNet on the bundled coco-mini photos and
 * prints the COCO box table. See configs/quickstart/retinanet_rla_tiny_coco_mini.ts.
 *
 *   npm run quickstart [-- [--backend NAME] [--work-dir DIR] [--workers N|auto]]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { loadDetectionConfig } from '../src/apis/config_loading.ts';
import { trainFromConfig } from '../src/apis/train.ts';
import { formatDuration } from '../src/engine/progress.ts';
import { parseBackendOption, parseCommandLine, parseWorkersOption, runMain } from '../src/utils/cli.ts';
import { writeFileAtomic } from '../src/utils/fs.ts';

const CONFIG = 'configs/quickstart/retinanet_rla_tiny_coco_mini.ts';

const USAGE = `usage: npm run quickstart [-- [--backend NAME] [--work-dir DIR] [--workers N|auto]]

Trains ${CONFIG} from scratch on data/coco-mini (26 photos), evaluates it on the same
photos and writes the checkpoint, metrics and COCO results to the work dir.

options:
  --backend NAME     auto | tensorflow | wasm | cpu (default: wasm, the embedded backend)
  --work-dir DIR     default: work_dirs/quickstart
  --workers N|auto   data-parallel worker threads (default: the config's 'auto', one per CPU
                     core but at most 2, the images per batch)
  -h, --help         show this help`;

/** Mean training loss of each epoch, read back from metrics.jsonl. */
function lossPerEpoch(metricsPath: string): Map<number, number> {
  const sums = new Map<number, { total: number; count: number }>();
  for (const line of readFileSync(metricsPath, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const record = JSON.parse(line) as { mode: string; epoch: number; loss?: number };
    if (record.mode !== 'train' || record.loss === undefined) continue;
    const entry = sums.get(record.epoch) ?? { total: 0, count: 0 };
    entry.total += record.loss;
    entry.count += 1;
    sums.set(record.epoch, entry);
  }
  return new Map([...sums].map(([epoch, { total, count }]) => [epoch, total / count]));
}

async function main(): Promise<void> {
  const { values } = parseCommandLine({
    args: process.argv.slice(2),
    options: {
      backend: { type: 'string', default: 'wasm' },
      'work-dir': { type: 'string', default: 'work_dirs/quickstart' },
      workers: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const backend = parseBackendOption(values.backend)!;
  const workers = parseWorkersOption(values.workers);
  const workDir = values['work-dir'];
  const started = performance.now();
  const config = await loadDetectionConfig(CONFIG);
  const result = await trainFromConfig(config, {
    workDir,
    backend,
    ...(workers === undefined ? {} : { workers }),
  });
  const seconds = (performance.now() - started) / 1000;

  const resultsPath = join(workDir, 'results.bbox.json');
  if (result.evaluation !== undefined) await writeFileAtomic(resultsPath, JSON.stringify(result.evaluation.results));

  const losses = lossPerEpoch(join(workDir, 'metrics.jsonl'));
  const epochs = [...losses.keys()].sort((a, b) => a - b);
  const shown = epochs.filter((epoch, i) => i === 0 || epoch % 10 === 0 || i === epochs.length - 1);
  const out = process.stdout;
  out.write(`\nrladet quick start: ${result.iterations} iterations in ${formatDuration(seconds)}\n`);
  out.write(`mean training loss by epoch: ${shown.map((epoch) => `${epoch}: ${losses.get(epoch)!.toFixed(3)}`).join(', ')}\n`);
  if (result.evaluation !== undefined) {
    out.write('\nCOCO box evaluation on the same 26 training photos (it measures memorisation, not generalisation):\n');
    out.write(result.evaluation.table + '\n');
    out.write(`bbox_mAP_copypaste: ${result.evaluation.copypaste}\n`);
    out.write(`results: ${resultsPath}\n`);
  }
  if (result.lastCheckpoint !== undefined) out.write(`checkpoint: ${result.lastCheckpoint}\n`);
  out.write(`reproduce the evaluation: npx tsx tools/test.ts ${CONFIG} ${result.lastCheckpoint ?? '<checkpoint>'} --eval bbox\n`);
}

runMain(main, USAGE);
