/**
 * Evaluates COCO detection results against COCO ground truth and prints pycocotools' table.
 *
 *   tsx tools/coco_eval.ts --gt GT --dt DT --iou-type bbox|segm [--per-class] [--json-out FILE]
 *
 * It imports only rladet's COCO module, not TensorFlow.js.
 */
import { COCO, COCOeval, readJsonFileAsync, registeredIouTypes, summaryStatNames, type CategoryMetrics } from '../src/coco/index.ts';
import { formatFixed } from '../src/coco/numeric.ts';
import { UsageError, parseCommandLine, runMain } from '../src/utils/cli.ts';
import { DataError } from '../src/utils/errors.ts';
import { writeFileAtomic } from '../src/utils/fs.ts';
import { getLogger } from '../src/utils/logger.ts';

const USAGE = `usage: tsx tools/coco_eval.ts --gt GT --dt DT --iou-type bbox|segm [--per-class] [--json-out FILE]

Evaluates detection results with the rules and numbers of pycocotools' COCOeval and prints its
summary table (the 12 AP and AR numbers) to stdout. Progress messages go to stderr.

options:
  --gt FILE          ground truth in COCO instances format, .json or .json.gz (gzip is detected
                     from the content). Files of any size are read as a stream.
  --dt FILE          detection results, .json or .json.gz: a list of {image_id, category_id,
                     score, bbox: [x, y, width, height]} or, for masks, {..., segmentation: RLE}
  --iou-type TYPE    bbox: box IoU; segm: mask IoU (ground-truth polygons and RLEs, result RLEs)
  --per-class        also print each category's AP, AP50, AP75 and AR (area all, last maxDets);
                     -1.000 marks a category without ground truth
  --json-out FILE    also write {"stats": [12 numbers], "statNames": [...], "perCategory": [...],
                     "seconds": {...}} to FILE (times in seconds per step)
  -h, --help         show this help

exit status: 0 on success, 1 when a file is missing or invalid, 2 on a usage error.`;

const logger = getLogger('coco_eval');

function secondsSince(started: number): number {
  return (performance.now() - started) / 1000;
}

/** Formats the per-category table: name, id, AP, AP50, AP75 and AR, one category per line. */
function formatPerCategoryTable(rows: readonly CategoryMetrics[]): string {
  const nameWidth = Math.max(8, ...rows.map((row) => (row.name ?? '').length));
  const maxDets = rows[0]?.maxDets ?? 100;
  const header = `${'category'.padEnd(nameWidth)}  ${'id'.padStart(6)}  ${'AP'.padStart(6)}  ${'AP50'.padStart(6)}  ${'AP75'.padStart(6)}  ${`AR@${maxDets}`.padStart(7)}`;
  const lines = rows.map((row) => {
    const values = [row.ap, row.ap50, row.ap75].map((value) => formatFixed(value, 3).padStart(6));
    return `${(row.name ?? '').padEnd(nameWidth)}  ${String(row.categoryId).padStart(6)}  ${values.join('  ')}  ${formatFixed(row.ar, 3).padStart(7)}`;
  });
  return [header, ...lines].join('\n');
}

async function main(): Promise<void> {
  const { values, positionals } = parseCommandLine({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: {
      gt: { type: 'string' },
      dt: { type: 'string' },
      'iou-type': { type: 'string' },
      'per-class': { type: 'boolean', default: false },
      'json-out': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  if (values.gt === undefined) throw new UsageError('missing --gt FILE');
  if (values.dt === undefined) throw new UsageError('missing --dt FILE');
  const iouType = values['iou-type'];
  if (iouType === undefined) throw new UsageError('missing --iou-type (bbox or segm)');
  if (!registeredIouTypes().includes(iouType)) {
    throw new UsageError(`--iou-type: '${iouType}' is not supported (supported: ${registeredIouTypes().join(', ')})`);
  }

  const started = performance.now();
  const gt = await COCO.load(values.gt, { logger });
  const loadGt = secondsSince(started);

  const resultsStarted = performance.now();
  logger.info(`loading results from ${values.dt}`);
  const records = await readJsonFileAsync(values.dt);
  if (!Array.isArray(records)) {
    throw new DataError(`${values.dt}: expected a JSON list of results, found a JSON object; is it a ground-truth file?`);
  }
  const dt = gt.loadRes(records, { source: values.dt });
  const loadResults = secondsSince(resultsStarted);
  logger.info(`loaded ${records.length} results (t=${loadResults.toFixed(2)}s)`);

  const evaluator = new COCOeval(gt, dt, iouType);
  let stepStarted = performance.now();
  logger.info(`running per-image evaluation, iouType ${iouType}`);
  evaluator.evaluate();
  const evaluate = secondsSince(stepStarted);
  logger.info(`done (t=${evaluate.toFixed(2)}s)`);

  stepStarted = performance.now();
  evaluator.accumulate();
  const accumulate = secondsSince(stepStarted);
  logger.info(`accumulated (t=${accumulate.toFixed(2)}s)`);

  stepStarted = performance.now();
  const { stats, text } = evaluator.summarize();
  const perCategory = evaluator.perCategory();
  const summarize = secondsSince(stepStarted);

  process.stdout.write(text + '\n');
  if (values['per-class']) process.stdout.write('\n' + formatPerCategoryTable(perCategory) + '\n');

  const jsonOut = values['json-out'];
  if (jsonOut !== undefined) {
    const report = {
      iouType,
      gt: values.gt,
      dt: values.dt,
      stats,
      statNames: summaryStatNames(evaluator.params.iouThrs, evaluator.params.maxDets),
      perCategory,
      seconds: { loadGt, loadResults, evaluate, accumulate, summarize, total: secondsSince(started) },
    };
    await writeFileAtomic(jsonOut, JSON.stringify(report, null, 2) + '\n');
    logger.info(`wrote ${jsonOut}`);
  }
}

runMain(main, USAGE);
