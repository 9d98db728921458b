/** The 12 COCO summary numbers, their printed table, and per-category metrics. */
import { ConfigError } from '../utils/errors.ts';
import type { AccumulatedEval } from './accumulate.ts';
import { formatFixed, numpyMean } from './numeric.ts';

export interface CocoSummary {
  /** AP .50:.95, AP50, AP75, AP small/medium/large, AR at maxDets[0..2], AR small/medium/large. -1 marks no ground truth. */
  stats: number[];
  /** The table as pycocotools prints it, one line per stat, lines joined by '\n'. */
  text: string;
}

interface SummaryRow {
  averagePrecision: boolean;
  iouThr?: number;
  areaRng: string;
  maxDets: number;
}

/** Collects the values > -1 (pycocotools' `s[s > -1]`) and returns their numpy mean, or -1 when there are none. */
class ValidValues {
  private values = new Float64Array(64);
  private count = 0;

  push(value: number): void {
    if (!(value > -1)) return;
    if (this.count === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.count++] = value;
  }

  mean(): number {
    return this.count === 0 ? -1 : numpyMean(this.values.subarray(0, this.count));
  }
}

/** Indices of the IoU thresholds equal to `iouThr` (exact comparison, as np.where in pycocotools), or all. */
function thresholdIndices(evaluation: AccumulatedEval, iouThr: number | undefined): number[] {
  const iouThrs = evaluation.params.iouThrs;
  const all = iouThrs.map((_, t) => t);
  return iouThr === undefined ? all : all.filter((t) => iouThrs[t] === iouThr);
}

/**
 * Returns the mean precision (or recall) over the matching thresholds, all recall thresholds
 * and all categories, for one area label and maxDets value, in numpy's C order.
 */
function summarizeRow(evaluation: AccumulatedEval, row: SummaryRow): number {
  const [, R, K, A, M] = evaluation.counts;
  const p = evaluation.params;
  const areaIndices = p.areaRngLbl.map((_, a) => a).filter((a) => p.areaRngLbl[a] === row.areaRng);
  const maxDetIndices = p.maxDets.map((_, m) => m).filter((m) => p.maxDets[m] === row.maxDets);
  const values = new ValidValues();
  for (const t of thresholdIndices(evaluation, row.iouThr)) {
    if (row.averagePrecision) {
      for (let r = 0; r < R; r++) {
        for (let k = 0; k < K; k++) {
          for (const a of areaIndices) {
            for (const m of maxDetIndices) values.push(evaluation.precision[(((t * R + r) * K + k) * A + a) * M + m]!);
          }
        }
      }
    } else {
      for (let k = 0; k < K; k++) {
        for (const a of areaIndices) {
          for (const m of maxDetIndices) values.push(evaluation.recall[((t * K + k) * A + a) * M + m]!);
        }
      }
    }
  }
  return values.mean();
}

/** Formats one line as pycocotools: ' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.364'. */
function formatRow(evaluation: AccumulatedEval, row: SummaryRow, value: number): string {
  const iouThrs = evaluation.params.iouThrs;
  const title = (row.averagePrecision ? 'Average Precision' : 'Average Recall').padEnd(18);
  const kind = row.averagePrecision ? '(AP)' : '(AR)';
  const iou =
    row.iouThr === undefined
      ? `${formatFixed(iouThrs[0]!, 2)}:${formatFixed(iouThrs[iouThrs.length - 1]!, 2)}`
      : formatFixed(row.iouThr, 2);
  const maxDets = String(row.maxDets).padStart(3);
  return ` ${title} ${kind} @[ IoU=${iou.padEnd(9)} | area=${row.areaRng.padStart(6)} | maxDets=${maxDets} ] = ${formatFixed(value, 3)}`;
}

/**
 * Returns the 12 rows of pycocotools' `_summarizeDets`. As there, the first row reads
 * maxDets 100 whatever params.maxDets contains and the others read maxDets[0..2].
 */
function detectionSummaryRows(maxDets: readonly number[]): SummaryRow[] {
  if (maxDets.length < 3) {
    throw new ConfigError(
      `summarize needs 3 params.maxDets values (such as [1, 10, 100]), found [${maxDets.join(', ')}]`,
    );
  }
  const last = maxDets[2]!;
  return [
    { averagePrecision: true, areaRng: 'all', maxDets: 100 },
    { averagePrecision: true, iouThr: 0.5, areaRng: 'all', maxDets: last },
    { averagePrecision: true, iouThr: 0.75, areaRng: 'all', maxDets: last },
    { averagePrecision: true, areaRng: 'small', maxDets: last },
    { averagePrecision: true, areaRng: 'medium', maxDets: last },
    { averagePrecision: true, areaRng: 'large', maxDets: last },
    { averagePrecision: false, areaRng: 'all', maxDets: maxDets[0]! },
    { averagePrecision: false, areaRng: 'all', maxDets: maxDets[1]! },
    { averagePrecision: false, areaRng: 'all', maxDets: last },
    { averagePrecision: false, areaRng: 'small', maxDets: last },
    { averagePrecision: false, areaRng: 'medium', maxDets: last },
    { averagePrecision: false, areaRng: 'large', maxDets: last },
  ];
}

/**
 * Computes the 12 detection summary numbers of pycocotools' `_summarizeDets`. Rows with no
 * matching setting give -1.
 */
export function summarizeDetections(evaluation: AccumulatedEval): CocoSummary {
  const rows = detectionSummaryRows(evaluation.params.maxDets);
  const stats = rows.map((row) => summarizeRow(evaluation, row));
  const lines = rows.map((row, n) => formatRow(evaluation, row, stats[n]!));
  return { stats, text: lines.join('\n') };
}

/**
 * Names the 12 summary numbers as 'AP@[0.50:0.95]|all|100', 'AP@0.50|all|100', ...,
 * 'AR@[0.50:0.95]|large|100': AP or AR, IoU threshold(s), area range, maxDets.
 */
export function summaryStatNames(iouThrs: readonly number[], maxDets: readonly number[]): string[] {
  const range = `[${formatFixed(iouThrs[0]!, 2)}:${formatFixed(iouThrs[iouThrs.length - 1]!, 2)}]`;
  return detectionSummaryRows(maxDets).map((row) => {
    const iou = row.iouThr === undefined ? range : formatFixed(row.iouThr, 2);
    return `${row.averagePrecision ? 'AP' : 'AR'}@${iou}|${row.areaRng}|${row.maxDets}`;
  });
}

/** Metrics of one category at area range index 0 and the last maxDets value, -1 without ground truth. */
export interface CategoryMetrics {
  categoryId: number;
  name: string | undefined;
  /** AP averaged over all IoU thresholds. */
  ap: number;
  /** AP at IoU 0.5, or -1 when 0.5 is not among the thresholds. */
  ap50: number;
  /** AP at IoU 0.75, or -1 when 0.75 is not among the thresholds. */
  ap75: number;
  /** Recall averaged over all IoU thresholds. */
  ar: number;
  /** The maxDets value these metrics were read at. */
  maxDets: number;
}

/**
 * Computes per-category AP, AP50, AP75 and AR at area range index 0 ('all') and the last
 * maxDets value, the slice MMDetection's class-wise table reads (precision[:, :, k, 0, -1]).
 */
export function perCategoryMetrics(
  evaluation: AccumulatedEval,
  categoryIds: readonly number[],
  categoryName: (categoryId: number) => string | undefined,
): CategoryMetrics[] {
  const [T, R, K, A, M] = evaluation.counts;
  const m = M - 1;
  const precisionMean = (k: number, thresholds: number[]) => {
    const values = new ValidValues();
    for (const t of thresholds) {
      for (let r = 0; r < R; r++) values.push(evaluation.precision[(((t * R + r) * K + k) * A + 0) * M + m]!);
    }
    return values.mean();
  };
  const allThresholds = thresholdIndices(evaluation, undefined);
  const at50 = thresholdIndices(evaluation, 0.5);
  const at75 = thresholdIndices(evaluation, 0.75);

  return categoryIds.map((categoryId, k) => {
    const recalls = new ValidValues();
    for (let t = 0; t < T; t++) recalls.push(evaluation.recall[((t * K + k) * A + 0) * M + m]!);
    return {
      categoryId,
      name: categoryName(categoryId),
      ap: precisionMean(k, allThresholds),
      ap50: precisionMean(k, at50),
      ap75: precisionMean(k, at75),
      ar: recalls.mean(),
      maxDets: evaluation.params.maxDets[m]!,
    };
  });
}
