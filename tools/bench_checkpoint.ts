/**
 * Times reading a ~100 MB PyTorch checkpoint against reading the same file's bytes.
 *
 *   npm run bench:checkpoint -- [FILE] [--repeats N]
 *
 * Without FILE, the benchmark reads a randomly initialised torchvision ResNet-50 from the temp
 * folder, saved like the official RLA-Net training script (`{'state_dict': module.-prefixed,
 * 'epoch'}`, 102 MB). When that file is missing, test/fixtures/pytorch/make_fixtures.py makes
 * it first, which needs Python with PyTorch (Debian: apt install python3-torch python3-torchvision).
 *
 * Rows (the median of N runs after one warm-up run, so the file is in the page cache):
 * - read bytes: fs.readFile of the whole file;
 * - read checkpoint: readWeightFile, i.e. readFile, zip directory, pickle, and a typed array
 *   per tensor (views of the file's buffer), without CRC-32 checks of the storages, as torch.load;
 * - + CRC-32: the same with every storage's CRC-32 checked (what convert_checkpoint does);
 * - + rladet layout: the above plus each tensor converted to float32 in rladet's layout
 *   (4-D OIHW to HWIO, 2-D transposed), the work that loading into a model adds.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { layoutKindOfRank, toRladetLayout } from '../src/engine/weights.ts';
import { readWeightFile } from '../src/io/weight_file.ts';

const GENERATOR = new URL('../test/fixtures/pytorch/make_fixtures.py', import.meta.url).pathname;

/** Makes the default benchmark checkpoint with the first Python that has torch. */
function makeCheckpoint(path: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  for (const python of ['/usr/bin/python3', 'python3']) {
    const result = spawnSync(python, [GENERATOR, '--bench', path], { stdio: 'inherit' });
    if (result.status === 0 && existsSync(path)) return;
  }
  throw new Error(`failed to create ${path}: no python3 with torch was found. Install python3-torch, or pass a checkpoint FILE.`);
}

async function timeMilliseconds(run: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { repeats: { type: 'string', default: '5' } } });
  const repeats = Number(values.repeats);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats: expected a positive integer, got '${values.repeats}'`);
  const path = positionals[0] ?? join(tmpdir(), 'rladet-bench', 'resnet50_random.pth');
  if (positionals[0] === undefined && !existsSync(path)) makeCheckpoint(path);

  const runs = {
    'read bytes': async () => readFile(path),
    'read checkpoint': async () => readWeightFile(path),
    '+ CRC-32': async () => readWeightFile(path, { verifyChecksums: true }),
    '+ rladet layout': async () => {
      const file = await readWeightFile(path);
      for (const tensor of file.tensors.values()) toRladetLayout(tensor, layoutKindOfRank(tensor.shape.length), file.layout);
    },
  };
  const medians = new Map<string, number>();
  for (const [name, run] of Object.entries(runs)) {
    await run();
    const times: number[] = [];
    for (let i = 0; i < repeats; i++) times.push(await timeMilliseconds(run));
    medians.set(name, median(times));
  }

  const file = await readWeightFile(path);
  const megabytes = statSync(path).size / 1e6;
  const baseline = medians.get('read bytes')!;
  process.stdout.write(`${path}: ${megabytes.toFixed(1)} MB, ${file.tensors.size} tensors, median of ${repeats} runs\n`);
  for (const [name, milliseconds] of medians) {
    const ratio = (milliseconds / baseline).toFixed(2);
    process.stdout.write(`  ${name.padEnd(16)} ${milliseconds.toFixed(1).padStart(8)} ms  ${(megabytes / (milliseconds / 1000)).toFixed(0).padStart(6)} MB/s  ${ratio}x read bytes\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exitCode = 1;
});
