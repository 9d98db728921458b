/**
 * Benchmark of the COCO evaluator on a COCO-sized set of ground truth and results files.
 * It measures load, evaluate and accumulate times and peak memory for bbox and segm, each run
 * in a fresh process, and checks that every run gives the same 12 numbers as the reference
 * port.
 *
 *   npm run bench:coco -- --data DIR [--iou-type bbox|segm|both] [--runs N] [--reference]
 *   npm run bench:coco -- --data DIR --large-json-mb 450
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { COCO, COCOeval, getIouComputer, readJsonFile, readJsonFileAsync, type CocoDataset } from '../src/coco/index.ts';
import { referenceEvaluate } from '../src/coco/reference.ts';
import { summarizeDetections } from '../src/coco/summarize.ts';
import { UsageError, parseCommandLine, runMain } from '../src/utils/cli.ts';
import { DataError } from '../src/utils/errors.ts';
import { writeFileAtomic } from '../src/utils/fs.ts';

const USAGE = `usage: npm run bench:coco -- [--data DIR] [options]

Times COCOeval on the files of DIR: COCO ground truth *_gt.json[.gz] with polygon
segmentations, box results *_dt_bbox.json[.gz] and mask (RLE) results *_dt_segm.json[.gz].
Each run is a fresh Node process, so that peak memory (RSS) is measured per run. Prints the
median of each step and checks that all runs, and the reference port with --reference, give
the same 12 numbers.

options:
  --data DIR           folder with the three files (default: $RLADET_COCO_BENCH_DIR)
  --iou-type TYPE      bbox, segm or both (default: both)
  --runs N             runs per iouType (default: 3)
  --reference          also run the line-by-line reference port once per iouType and compare
                       its 12 numbers (slow: minutes, several GB of memory)
  --json-out FILE      write all measurements as JSON
  --large-json-mb N    instead, write a plain instances file of about N MB by repeating DIR's
                       ground truth with new ids, and time three ways of loading it
  -h, --help           show this help

Peak RSS is the process's maximum resident set size (getrusage), in MB (10^6 bytes).`;

const TOLERANCE = 1e-12;
/**
 * What pycocotools (cocoapi 8c9bcc3, numpy 1.24) took for evaluate + accumulate on the
 * 5000-image synthetic set described in docs/benchmarks/coco_eval.md, on the same 2-core
 * machine, measured before this script existed.
 */
const PYCOCOTOOLS = {
  bbox: { seconds: 28.7, peakRssGb: 1.8 },
  segm: { seconds: 38.2, peakRssGb: 2.1 },
} as const;

interface RunReport {
  iouType: string;
  seconds: { loadGt: number; loadResults: number; evaluate: number; accumulate: number; summarize: number };
  /** CPU time of the process (all threads, so garbage collection helpers count) during evaluate and accumulate. */
  cpuSecondsEvaluateAccumulate: number;
  stats: number[];
  peakRssMb: number;
  loadAverageBefore: number[];
  loadAverageAfter: number[];
}

function secondsSince(started: number): number {
  return (performance.now() - started) / 1000;
}

function peakRssMb(): number {
  return (process.resourceUsage().maxRSS * 1024) / 1e6;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Finds the generated files in `dir` by their suffixes. */
function findFiles(dir: string): { gt: string; dt: Record<'bbox' | 'segm', string> } {
  const names = readdirSync(dir);
  const find = (suffix: string) => {
    const name = names.find((n) => n.endsWith(`${suffix}.json`) || n.endsWith(`${suffix}.json.gz`));
    if (name === undefined) throw new DataError(`${dir}: no *${suffix}.json or *${suffix}.json.gz file found`);
    return join(dir, name);
  };
  return { gt: find('_gt'), dt: { bbox: find('_dt_bbox'), segm: find('_dt_segm') } };
}

/** Runs one timed evaluation in this process and prints its report as one JSON line. */
async function childRun(dir: string, iouType: 'bbox' | 'segm'): Promise<void> {
  const files = findFiles(dir);
  const loadAverageBefore = loadavg();
  let started = performance.now();
  const gt = await COCO.load(files.gt);
  const loadGt = secondsSince(started);

  started = performance.now();
  const records = await readJsonFileAsync(files.dt[iouType]);
  const dt = gt.loadRes(records as unknown[], { source: files.dt[iouType] });
  const loadResults = secondsSince(started);

  const evaluator = new COCOeval(gt, dt, iouType);
  const cpuBefore = process.cpuUsage();
  started = performance.now();
  evaluator.evaluate();
  const evaluate = secondsSince(started);
  started = performance.now();
  evaluator.accumulate();
  const accumulate = secondsSince(started);
  const cpu = process.cpuUsage(cpuBefore);
  started = performance.now();
  const { stats } = evaluator.summarize();
  const summarize = secondsSince(started);

  const report: RunReport = {
    iouType,
    seconds: { loadGt, loadResults, evaluate, accumulate, summarize },
    cpuSecondsEvaluateAccumulate: (cpu.user + cpu.system) / 1e6,
    stats,
    peakRssMb: peakRssMb(),
    loadAverageBefore,
    loadAverageAfter: loadavg(),
  };
  process.stdout.write(JSON.stringify(report) + '\n');
}

/** Runs the reference port in this process and prints its 12 numbers as one JSON line. */
async function childReference(dir: string, iouType: 'bbox' | 'segm'): Promise<void> {
  const files = findFiles(dir);
  const gt = await COCO.load(files.gt);
  const dt = gt.loadRes((await readJsonFileAsync(files.dt[iouType])) as unknown[]);
  const started = performance.now();
  const evaluation = referenceEvaluate(gt, dt, getIouComputer(iouType));
  const { stats } = summarizeDetections(evaluation);
  process.stdout.write(JSON.stringify({ iouType, stats, seconds: secondsSince(started), peakRssMb: peakRssMb() }) + '\n');
}

/** Runs this script in a fresh process with `args` (and extra Node flags) and parses the JSON line it prints. */
function runChild<T>(args: string[], nodeFlags: string[] = []): T {
  const result = spawnSync(process.execPath, [...nodeFlags, '--expose-gc', '--import', 'tsx', resolve('tools/bench_coco.ts'), ...args], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, RLADET_LOG_LEVEL: 'warn' },
  });
  if (result.status !== 0) {
    throw new Error(`benchmark child ${args.join(' ')} failed with status ${result.status}:\n${result.stderr}`);
  }
  const lines = result.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

function maxDifference(a: readonly number[], b: readonly number[]): number {
  return a.reduce((max, value, i) => Math.max(max, Math.abs(value - b[i]!)), 0);
}

function formatSeconds(values: readonly number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  return `${median(values).toFixed(2)} s (${sorted[0]!.toFixed(2)}-${sorted[sorted.length - 1]!.toFixed(2)})`;
}

async function benchmark(dir: string, iouTypes: Array<'bbox' | 'segm'>, runs: number, withReference: boolean, jsonOut?: string): Promise<void> {
  const summary: Record<string, unknown> = { data: dir, runs, machine: { cpus: (await import('node:os')).cpus().length } };
  let allEqual = true;
  for (const iouType of iouTypes) {
    const reports: RunReport[] = [];
    for (let run = 0; run < runs; run++) {
      const report = runChild<RunReport>(['--child-run', '--data', dir, '--iou-type', iouType]);
      reports.push(report);
      const s = report.seconds;
      process.stdout.write(
        `${iouType} run ${run + 1}: load gt ${s.loadGt.toFixed(2)} s, load results ${s.loadResults.toFixed(2)} s, ` +
          `evaluate ${s.evaluate.toFixed(2)} s, accumulate ${s.accumulate.toFixed(2)} s ` +
          `(CPU ${report.cpuSecondsEvaluateAccumulate.toFixed(2)} s), peak RSS ${report.peakRssMb.toFixed(0)} MB, ` +
          `load average ${report.loadAverageBefore[0]!.toFixed(2)} -> ${report.loadAverageAfter[0]!.toFixed(2)}\n`,
      );
    }
    const stats = reports[0]!.stats;
    const runsAgree = reports.every((report) => maxDifference(report.stats, stats) === 0);
    const evaluatePlusAccumulate = reports.map((r) => r.seconds.evaluate + r.seconds.accumulate);
    const medianPeakRss = median(reports.map((r) => r.peakRssMb));
    const baseline = PYCOCOTOOLS[iouType];
    process.stdout.write(
      `${iouType}: median over ${runs} runs (min-max)\n` +
        `  load gt          ${formatSeconds(reports.map((r) => r.seconds.loadGt))}\n` +
        `  load results     ${formatSeconds(reports.map((r) => r.seconds.loadResults))}\n` +
        `  evaluate         ${formatSeconds(reports.map((r) => r.seconds.evaluate))}\n` +
        `  accumulate       ${formatSeconds(reports.map((r) => r.seconds.accumulate))}\n` +
        `  evaluate+accum.  ${formatSeconds(evaluatePlusAccumulate)}: ` +
        `${(baseline.seconds / median(evaluatePlusAccumulate)).toFixed(1)}x faster than pycocotools' ${baseline.seconds} s\n` +
        `  peak RSS         ${medianPeakRss.toFixed(0)} MB (pycocotools: ${baseline.peakRssGb} GB)\n` +
        `  stats            ${stats.map((v) => v.toFixed(4)).join(' ')}\n` +
        `  runs agree       ${runsAgree ? 'yes' : 'NO'}\n`,
    );
    allEqual &&= runsAgree;
    const entry: Record<string, unknown> = { reports, stats, runsAgree };
    if (withReference) {
      // The reference port keeps pycocotools' per-image objects: about 5 GB on the 5000-image set.
      const reference = runChild<{ stats: number[]; seconds: number; peakRssMb: number }>(
        ['--child-reference', '--data', dir, '--iou-type', iouType],
        ['--max-old-space-size=12288'],
      );
      const difference = maxDifference(reference.stats, stats);
      const equal = difference < TOLERANCE;
      allEqual &&= equal;
      entry['reference'] = { ...reference, maxDifference: difference };
      process.stdout.write(
        `  reference port   ${equal ? 'same 12 numbers' : 'DIFFERENT numbers'} (max |diff| ${difference}), ` +
          `${reference.seconds.toFixed(1)} s for evaluate+accumulate, peak RSS ${reference.peakRssMb.toFixed(0)} MB\n`,
      );
    }
    summary[iouType] = entry;
  }
  if (jsonOut !== undefined) await writeFileAtomic(jsonOut, JSON.stringify(summary, null, 2) + '\n');
  if (!allEqual) throw new DataError('the 12 numbers differ between runs or from the reference port');
}

/** Writes a plain instances file of about `megabytes` MB: `source`'s images and annotations repeated with new ids. */
function writeLargeInstances(source: CocoDataset, path: string, megabytes: number): { bytes: number; images: number; annotations: number } {
  const images = source.images ?? [];
  const annotations = source.annotations ?? [];
  const imageBytes = images.reduce((sum, image) => sum + JSON.stringify(image).length + 1, 0);
  const annotationBytes = annotations.reduce((sum, annotation) => sum + JSON.stringify(annotation).length + 1, 0);
  const copies = Math.max(1, Math.round((megabytes * 1e6) / (imageBytes + annotationBytes)));
  const maxImageId = Math.max(...images.map((image) => image.id));
  const maxAnnotationId = Math.max(...annotations.map((annotation) => annotation.id));

  const fd = openSync(path, 'w');
  let pending = '';
  const write = (text: string) => {
    pending += text;
    if (pending.length > 1 << 22) {
      writeSync(fd, pending);
      pending = '';
    }
  };
  try {
    write(`{"info": ${JSON.stringify(source.info ?? {})}, "licenses": ${JSON.stringify(source.licenses ?? [])}, "images": [`);
    for (let copy = 0; copy < copies; copy++) {
      images.forEach((image, i) => write((copy + i === 0 ? '' : ',') + JSON.stringify({ ...image, id: image.id + copy * (maxImageId + 1) })));
    }
    write('], "annotations": [');
    for (let copy = 0; copy < copies; copy++) {
      annotations.forEach((annotation, i) => {
        const moved = { ...annotation, id: annotation.id + copy * (maxAnnotationId + 1), image_id: annotation.image_id + copy * (maxImageId + 1) };
        write((copy + i === 0 ? '' : ',') + JSON.stringify(moved));
      });
    }
    write(`], "categories": ${JSON.stringify(source.categories ?? [])}}`);
    writeSync(fd, pending);
  } finally {
    closeSync(fd);
  }
  return { bytes: statSync(path).size, images: images.length * copies, annotations: annotations.length * copies };
}

type LoadMode = 'stream' | 'sync' | 'parse';

const LOAD_MODES: Record<LoadMode, string> = {
  stream: 'COCO.load (streamed, chunked parse)',
  sync: 'new COCO(path) (read in 4 MiB chunks, chunked parse)',
  parse: 'one JSON.parse of the whole text',
};

/** Loads the large file in this process and prints time, memory and counts as one JSON line. */
async function childLoad(path: string, mode: LoadMode): Promise<void> {
  const started = performance.now();
  let coco: COCO;
  if (mode === 'stream') coco = await COCO.load(path);
  else if (mode === 'sync') coco = new COCO(path);
  else coco = new COCO(JSON.parse(readFileSync(path, 'utf8')) as CocoDataset, { source: path });
  const seconds = secondsSince(started);
  globalThis.gc?.();
  const heapUsedMb = process.memoryUsage().heapUsed / 1e6;
  process.stdout.write(
    JSON.stringify({ mode, seconds, peakRssMb: peakRssMb(), heapUsedMb, images: coco.imgs.size, annotations: coco.anns.size }) + '\n',
  );
}

async function largeJson(dir: string, megabytes: number): Promise<void> {
  const files = findFiles(dir);
  const work = mkdtempSync(join(tmpdir(), 'rladet-large-json-'));
  try {
    const path = join(work, 'instances_large.json');
    const written = writeLargeInstances(readJsonFile(files.gt) as CocoDataset, path, megabytes);
    process.stdout.write(
      `wrote ${path}: ${(written.bytes / 1e6).toFixed(0)} MB, ${written.images} images, ${written.annotations} annotations\n`,
    );
    for (const mode of Object.keys(LOAD_MODES) as LoadMode[]) {
      let line: string;
      try {
        const report = runChild<{ seconds: number; peakRssMb: number; heapUsedMb: number; annotations: number }>(['--child-load', path, '--mode', mode]);
        line =
          `${report.seconds.toFixed(1)} s, peak RSS ${report.peakRssMb.toFixed(0)} MB, heap after GC ` +
          `${report.heapUsedMb.toFixed(0)} MB, ${report.annotations} annotations indexed`;
      } catch (error) {
        line = `failed: ${(error as Error).message.split('\n').find((text) => text.startsWith('error:')) ?? (error as Error).message}`;
      }
      process.stdout.write(`${LOAD_MODES[mode]}: ${line}\n`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseCommandLine({
    args: process.argv.slice(2),
    options: {
      data: { type: 'string' },
      'iou-type': { type: 'string', default: 'both' },
      runs: { type: 'string', default: '3' },
      reference: { type: 'boolean', default: false },
      'json-out': { type: 'string' },
      'large-json-mb': { type: 'string' },
      'child-run': { type: 'boolean', default: false },
      'child-reference': { type: 'boolean', default: false },
      'child-load': { type: 'string' },
      mode: { type: 'string', default: 'stream' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (values['child-load'] !== undefined) {
    const mode = values.mode as LoadMode;
    if (!(mode in LOAD_MODES)) throw new UsageError(`--mode: '${mode}' is not one of ${Object.keys(LOAD_MODES).join(', ')}`);
    return childLoad(values['child-load'], mode);
  }

  const dir = values.data ?? process.env['RLADET_COCO_BENCH_DIR'];
  if (dir === undefined) throw new UsageError('missing --data DIR (or set RLADET_COCO_BENCH_DIR)');
  const iouTypeOption = values['iou-type'];
  if (!['bbox', 'segm', 'both'].includes(iouTypeOption)) throw new UsageError(`--iou-type: '${iouTypeOption}' is not bbox, segm or both`);
  const iouTypes: Array<'bbox' | 'segm'> = iouTypeOption === 'both' ? ['bbox', 'segm'] : [iouTypeOption as 'bbox' | 'segm'];

  if (values['child-run']) return childRun(dir, iouTypes[0]!);
  if (values['child-reference']) return childReference(dir, iouTypes[0]!);
  if (values['large-json-mb'] !== undefined) {
    const megabytes = Number(values['large-json-mb']);
    if (!(megabytes > 0)) throw new UsageError(`--large-json-mb: expected a positive number, found '${values['large-json-mb']}'`);
    return largeJson(dir, megabytes);
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`--runs: expected a positive integer, found '${values.runs}'`);
  await benchmark(dir, iouTypes, runs, values.reference, values['json-out']);
}

runMain(main, USAGE);
