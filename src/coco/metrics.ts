/** COCO summary numbers under the names MMDetection 2.x logs them (mmdet/datasets/coco.py). */
import { formatFixed } from './numeric.ts';

/**
 * maxDets that MMDetection 2.x sets for every COCO evaluation (its `proposal_nums`), so its
 * AR names read AR@100, AR@300 and AR@1000. With these, stats[0] still reads maxDets 100 and
 * the other AP numbers read 1000.
 */
export const MMDET_MAX_DETS: readonly number[] = [100, 300, 1000];

export interface MetricNameOptions {
  /** The metric prefix, 'bbox' or 'segm'. */
  prefix: string;
  /** The params.maxDets the stats were computed with, which name the AR numbers. */
  maxDets: readonly number[];
  /**
   * Decimals to round to, as MMDetection does with float(f'{value:.3f}'). null keeps the
   * full value. Defaults to 3.
   */
  decimals?: number | null;
}

/**
 * Maps the 12 stats to MMDetection's names: `${prefix}_mAP`, `_mAP_50`, `_mAP_75`, `_mAP_s`,
 * `_mAP_m`, `_mAP_l`, then `_AR@${maxDets[0]}`, `_AR@${maxDets[1]}`, `_AR@${maxDets[2]}` and
 * `_AR_s@`, `_AR_m@`, `_AR_l@` at maxDets[2] (bbox_AR@100 ... bbox_AR_l@1000 with MMDetection's
 * maxDets). MMDetection logs the six mAP entries by default.
 */
export function cocoStatsToMetrics(stats: readonly number[], options: MetricNameOptions): Record<string, number> {
  if (stats.length !== 12) throw new RangeError(`expected the 12 COCO summary stats, found ${stats.length} values`);
  if (options.maxDets.length !== 3) {
    throw new RangeError(`expected 3 maxDets values, found [${options.maxDets.join(', ')}]`);
  }
  const decimals = options.decimals === undefined ? 3 : options.decimals;
  const round = (value: number) => (decimals === null ? value : Number(formatFixed(value, decimals)));
  const [first, second, last] = options.maxDets;
  const names = [
    'mAP',
    'mAP_50',
    'mAP_75',
    'mAP_s',
    'mAP_m',
    'mAP_l',
    `AR@${first}`,
    `AR@${second}`,
    `AR@${last}`,
    `AR_s@${last}`,
    `AR_m@${last}`,
    `AR_l@${last}`,
  ];
  const metrics: Record<string, number> = {};
  names.forEach((name, n) => {
    metrics[`${options.prefix}_${name}`] = round(stats[n]!);
  });
  return metrics;
}

/** Returns MMDetection's `${prefix}_mAP_copypaste` text: the six AP stats with 3 decimals, space-separated. */
export function formatMapCopypaste(stats: readonly number[]): string {
  if (stats.length < 6) throw new RangeError(`expected at least the 6 AP stats, found ${stats.length} values`);
  return stats
    .slice(0, 6)
    .map((value) => formatFixed(value, 3))
    .join(' ');
}
