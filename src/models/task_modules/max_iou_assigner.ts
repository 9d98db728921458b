import { checkOptionKeys } from '../../config/config.ts';
import { numBoxes, type BoxArray } from '../../ops/boxes.ts';
import { ASSIGNERS } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import type { AssignInput, AssignResult, Assigner } from './types.ts';

/**
 * MMDetection 2.x `MaxIoUAssigner`. Each candidate box gets -1 (ignored), 0 (negative) or
 * i + 1 (positive for ground-truth box i), in this order:
 * 1. Every candidate starts at -1.
 * 2. A candidate whose largest IoU is in [0, negIouThr) (or [lo, hi) for a pair) becomes 0.
 * 3. A candidate whose largest IoU is >= posIouThr becomes 1 + the index of that ground-truth
 *    box (the first one on ties).
 * 4. With `matchLowQuality`, for each ground-truth box i in order whose best IoU is >= minPosIou,
 *    every candidate at exactly that IoU (or only the first, without `gtMaxAssignAll`) becomes
 *    i + 1. Later boxes overwrite earlier ones, and this step may overwrite step 3.
 * With `ignoreIofThr` > 0, candidates that overlap an ignore region by more than that IoF get
 * IoU -1 with every ground-truth box first, so they stay -1 unless step 4 picks them.
 * IoU is computed in float64 with MMDetection's union floor of 1e-6, so degenerate pairs give 0.
 * NOTE: MMDetection computes IoU in float32, so a candidate whose IoU lies within float32
 * rounding of a threshold, or of a tie, can be assigned differently.
 */

export interface MaxIoUAssignerOptions {
  posIouThr: number;
  /** A number, or `[lo, hi]`: candidates with largest IoU in [lo, hi) are negatives. */
  negIouThr: number | readonly [number, number];
  minPosIou?: number;
  gtMaxAssignAll?: boolean;
  /** IoF above which a candidate inside an ignore region is ignored. A value <= 0 disables it (default -1). */
  ignoreIofThr?: number;
  /** Divide the intersection by the candidate's area (true, default) or by the ignore region's. */
  ignoreWrtCandidates?: boolean;
  matchLowQuality?: boolean;
}

declare module '../../config/component_types.ts' {
  interface AssignerTypes {
    MaxIoUAssigner: MaxIoUAssignerOptions;
  }
}

const OPTION_KEYS = [
  'posIouThr',
  'negIouThr',
  'minPosIou',
  'gtMaxAssignAll',
  'ignoreIofThr',
  'ignoreWrtCandidates',
  'matchLowQuality',
] as const;

/** MMDetection's `bbox_overlaps` floor on the union (and on the area for IoF). */
const OVERLAP_EPS = 1e-6;

/**
 * Source of the `[numGts, numBoxes]` overlap matrix, one row at a time, so that the assigner
 * never stores the whole matrix (100 boxes by 200k anchors would take 160 MB in float64).
 */
interface OverlapRows {
  numGts: number;
  numBoxes: number;
  /** Writes row `gtIndex` (overlaps of ground-truth box `gtIndex` with every candidate) into `out`. */
  fillRow(gtIndex: number, out: Float64Array): void;
}

export class MaxIoUAssigner implements Assigner {
  readonly posIouThr: number;
  readonly negIouThr: readonly [number, number];
  readonly minPosIou: number;
  readonly gtMaxAssignAll: boolean;
  readonly ignoreIofThr: number;
  readonly ignoreWrtCandidates: boolean;
  readonly matchLowQuality: boolean;

  constructor(options: MaxIoUAssignerOptions, path = 'MaxIoUAssigner') {
    checkOptionKeys(path, options, OPTION_KEYS);
    this.posIouThr = requireNumber(path, 'posIouThr', options.posIouThr);
    const neg = options.negIouThr;
    if (typeof neg === 'number') {
      this.negIouThr = [0, requireNumber(path, 'negIouThr', neg)];
    } else if (Array.isArray(neg) && neg.length === 2) {
      this.negIouThr = [requireNumber(path, 'negIouThr[0]', neg[0]), requireNumber(path, 'negIouThr[1]', neg[1])];
    } else {
      throw new ConfigError(`${path}: 'negIouThr' must be a number or [lo, hi], got ${JSON.stringify(neg)}`);
    }
    this.minPosIou = requireNumber(path, 'minPosIou', options.minPosIou ?? 0);
    this.gtMaxAssignAll = options.gtMaxAssignAll ?? true;
    this.ignoreIofThr = requireNumber(path, 'ignoreIofThr', options.ignoreIofThr ?? -1);
    this.ignoreWrtCandidates = options.ignoreWrtCandidates ?? true;
    this.matchLowQuality = options.matchLowQuality ?? true;
  }

  /** Assigns `gtBoxes` to `boxes` (see the module comment for the rules). */
  assign(input: AssignInput): AssignResult {
    const numCandidates = numBoxes(input.boxes, 'boxes');
    const numGts = numBoxes(input.gtBoxes, 'gtBoxes');
    if (input.gtLabels !== undefined && input.gtLabels.length !== numGts) {
      throw new RangeError(`MaxIoUAssigner: ${numGts} gt boxes but ${input.gtLabels.length} gt labels`);
    }
    const ignored = this.ignoredCandidates(input.boxes, input.ignoredBoxes);
    const rows: OverlapRows = {
      numGts,
      numBoxes: numCandidates,
      fillRow: (gtIndex, out) => {
        fillIouRow(input.gtBoxes, gtIndex, input.boxes, out);
        if (ignored !== null) for (let j = 0; j < numCandidates; j++) if (ignored[j] === 1) out[j] = -1;
      },
    };
    return this.assignRows(rows, input.gtLabels);
  }

  /**
   * Assigns from a precomputed row-major overlap matrix `[numGts, numBoxes]`
   * (MMDetection's `assign_wrt_overlaps`).
   */
  assignWrtOverlaps(overlaps: ArrayLike<number>, numGts: number, numCandidates: number, gtLabels?: Int32Array): AssignResult {
    if (overlaps.length !== numGts * numCandidates) {
      throw new RangeError(`MaxIoUAssigner: overlaps has ${overlaps.length} values, expected ${numGts} x ${numCandidates}`);
    }
    const rows: OverlapRows = {
      numGts,
      numBoxes: numCandidates,
      fillRow: (gtIndex, out) => {
        for (let j = 0; j < numCandidates; j++) out[j] = overlaps[gtIndex * numCandidates + j]!;
      },
    };
    return this.assignRows(rows, gtLabels);
  }

  /** Per-candidate flags (1 = inside an ignore region), or null when ignoring is off or there is nothing to ignore. */
  private ignoredCandidates(boxes: BoxArray, ignoredBoxes: BoxArray | undefined): Uint8Array | null {
    if (!(this.ignoreIofThr > 0) || ignoredBoxes === undefined) return null;
    const numIgnored = numBoxes(ignoredBoxes, 'ignoredBoxes');
    const numCandidates = boxes.length / 4;
    if (numIgnored === 0 || numCandidates === 0) return null;
    const flags = new Uint8Array(numCandidates);
    for (let j = 0; j < numCandidates; j++) {
      const cx1 = boxes[4 * j]!;
      const cy1 = boxes[4 * j + 1]!;
      const cx2 = boxes[4 * j + 2]!;
      const cy2 = boxes[4 * j + 3]!;
      const candidateArea = (cx2 - cx1) * (cy2 - cy1);
      let maxIof = -Infinity;
      for (let r = 0; r < numIgnored; r++) {
        const o = 4 * r;
        const w = Math.min(cx2, ignoredBoxes[o + 2]!) - Math.max(cx1, ignoredBoxes[o]!);
        const h = Math.min(cy2, ignoredBoxes[o + 3]!) - Math.max(cy1, ignoredBoxes[o + 1]!);
        const inter = w > 0 && h > 0 ? w * h : 0;
        const area = this.ignoreWrtCandidates
          ? candidateArea
          : (ignoredBoxes[o + 2]! - ignoredBoxes[o]!) * (ignoredBoxes[o + 3]! - ignoredBoxes[o + 1]!);
        maxIof = Math.max(maxIof, inter / Math.max(area, OVERLAP_EPS));
      }
      if (maxIof > this.ignoreIofThr) flags[j] = 1;
    }
    return flags;
  }

  private assignRows(rows: OverlapRows, gtLabels: Int32Array | undefined): AssignResult {
    const { numGts, numBoxes: n } = rows;
    const gtInds = new Int32Array(n).fill(-1);
    const maxOverlaps = new Float64Array(n);
    const labels = gtLabels === undefined ? null : new Int32Array(n).fill(-1);
    if (numGts === 0 || n === 0) {
      // No ground truth: everything is background. No candidates: empty results.
      gtInds.fill(0);
      return { numGts, gtInds, maxOverlaps, labels };
    }

    // Pass 1: best ground truth per candidate (first on ties) and best IoU per ground truth.
    const argmaxOverlaps = new Int32Array(n);
    maxOverlaps.fill(-Infinity);
    const gtMaxOverlaps = new Float64Array(numGts);
    const gtArgmaxOverlaps = new Int32Array(numGts);
    const row = new Float64Array(n);
    for (let i = 0; i < numGts; i++) {
      rows.fillRow(i, row);
      let best = -Infinity;
      let bestIndex = 0;
      for (let j = 0; j < n; j++) {
        const value = row[j]!;
        if (value > maxOverlaps[j]!) {
          maxOverlaps[j] = value;
          argmaxOverlaps[j] = i;
        }
        if (value > best) {
          best = value;
          bestIndex = j;
        }
      }
      gtMaxOverlaps[i] = best;
      gtArgmaxOverlaps[i] = bestIndex;
    }

    // Negatives, then positives.
    const [negLow, negHigh] = this.negIouThr;
    for (let j = 0; j < n; j++) {
      const value = maxOverlaps[j]!;
      if (value >= negLow && value < negHigh) gtInds[j] = 0;
      if (value >= this.posIouThr) gtInds[j] = argmaxOverlaps[j]! + 1;
    }

    // Low-quality matches: each ground-truth box claims its best candidates even below posIouThr.
    // NOTE: with minPosIou 0 (RetinaNet) a box that overlaps no candidate has best IoU 0 and, with
    // gtMaxAssignAll, claims every candidate at IoU 0, as in MMDetection 2.x. Only a zero-area box or
    // one outside the image can overlap no anchor.
    if (this.matchLowQuality) {
      for (let i = 0; i < numGts; i++) {
        const best = gtMaxOverlaps[i]!;
        if (!(best >= this.minPosIou)) continue;
        if (!this.gtMaxAssignAll) {
          gtInds[gtArgmaxOverlaps[i]!] = i + 1;
          continue;
        }
        rows.fillRow(i, row);
        for (let j = 0; j < n; j++) if (row[j] === best) gtInds[j] = i + 1;
      }
    }

    if (labels !== null && gtLabels !== undefined) {
      for (let j = 0; j < n; j++) if (gtInds[j]! > 0) labels[j] = gtLabels[gtInds[j]! - 1]!;
    }
    return { numGts, gtInds, maxOverlaps, labels };
  }
}

/** Writes the IoU of ground-truth box `gtIndex` with every candidate into `out` (MMDetection's union floor). */
function fillIouRow(gtBoxes: BoxArray, gtIndex: number, boxes: BoxArray, out: Float64Array): void {
  const gx1 = gtBoxes[4 * gtIndex]!;
  const gy1 = gtBoxes[4 * gtIndex + 1]!;
  const gx2 = gtBoxes[4 * gtIndex + 2]!;
  const gy2 = gtBoxes[4 * gtIndex + 3]!;
  const gtArea = (gx2 - gx1) * (gy2 - gy1);
  for (let j = 0; j < out.length; j++) {
    const o = 4 * j;
    const x1 = boxes[o]!;
    const y1 = boxes[o + 1]!;
    const x2 = boxes[o + 2]!;
    const y2 = boxes[o + 3]!;
    const w = Math.min(gx2, x2) - Math.max(gx1, x1);
    const h = Math.min(gy2, y2) - Math.max(gy1, y1);
    const inter = w > 0 && h > 0 ? w * h : 0;
    const union = gtArea + (x2 - x1) * (y2 - y1) - inter;
    out[j] = inter / Math.max(union, OVERLAP_EPS);
  }
}

function requireNumber(path: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new ConfigError(`${path}: '${name}' must be a number, got ${JSON.stringify(value)}`);
  }
  return value;
}

ASSIGNERS.register('MaxIoUAssigner', (options: MaxIoUAssignerOptions, path) => new MaxIoUAssigner(options, path));
