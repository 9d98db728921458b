import { numBoxes, type BoxArray } from './boxes.ts';

/**
 * Greedy non-maximum suppression in float64, with the semantics of torchvision 0.14's
 * `nms` and `batched_nms`:
 * - Boxes are visited by decreasing score, exact score ties by lower index first.
 * - A kept box suppresses every later box whose IoU with it is strictly greater than the
 *   threshold, so an IoU equal to the threshold survives.
 * - IoU = inter / (area1 + area2 - inter), so two zero-area boxes give NaN and never
 *   suppress each other.
 * Because IoU is computed in float64, results equal torchvision's float64 keep lists. Its
 * float32 kernel can differ at exact thresholds (6/20 is 0.3 in float64 but rounds above 0.3
 * in float32).
 */

/** Returns the indices of `scores` ordered by decreasing score, exact ties by lower index first. */
export function sortByScore(scores: ArrayLike<number>): Int32Array {
  const order = new Int32Array(scores.length);
  for (let i = 0; i < order.length; i++) {
    const score = scores[i]!;
    if (Number.isNaN(score)) throw new RangeError(`nms: scores[${i}] is NaN`);
    order[i] = i;
  }
  return order.sort((a, b) => scores[b]! - scores[a]! || a - b);
}

/**
 * Runs greedy NMS over the boxes at `positions` of `sorted` (already in visiting order) and
 * sets `keptFlags[p]` = 1 for each survivor.
 */
function suppressGroup(sorted: Float64Array, positions: Int32Array, iouThreshold: number, keptFlags: Uint8Array): void {
  const count = positions.length;
  // The group's coordinates are copied next to each other so that the inner loop reads memory in order.
  const coords = new Float64Array(4 * count);
  const areas = new Float64Array(count);
  for (let k = 0; k < count; k++) {
    const p = positions[k]!;
    for (let c = 0; c < 4; c++) coords[4 * k + c] = sorted[4 * p + c]!;
    areas[k] = (coords[4 * k + 2]! - coords[4 * k]!) * (coords[4 * k + 3]! - coords[4 * k + 1]!);
  }

  const suppressed = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    if (suppressed[i] === 1) continue;
    keptFlags[positions[i]!] = 1;
    const x1 = coords[4 * i]!;
    const y1 = coords[4 * i + 1]!;
    const x2 = coords[4 * i + 2]!;
    const y2 = coords[4 * i + 3]!;
    const area = areas[i]!;
    for (let j = i + 1; j < count; j++) {
      if (suppressed[j] === 1) continue;
      const o = 4 * j;
      const w = Math.min(x2, coords[o + 2]!) - Math.max(x1, coords[o]!);
      if (w <= 0) continue;
      const h = Math.min(y2, coords[o + 3]!) - Math.max(y1, coords[o + 1]!);
      if (h <= 0) continue;
      const inter = w * h;
      if (inter / (area + areas[j]! - inter) > iouThreshold) suppressed[j] = 1;
    }
  }
}

function checkInputs(boxes: BoxArray, scores: ArrayLike<number>, iouThreshold: number): number {
  const n = numBoxes(boxes);
  if (scores.length !== n) throw new RangeError(`nms: ${n} boxes but ${scores.length} scores`);
  if (!Number.isFinite(iouThreshold)) throw new RangeError(`nms: iouThreshold must be a finite number, got ${iouThreshold}`);
  return n;
}

/** Boxes reordered into `order`, as float64. */
function gatherSorted(boxes: BoxArray, order: Int32Array): Float64Array {
  const sorted = new Float64Array(4 * order.length);
  for (let p = 0; p < order.length; p++) {
    const i = order[p]!;
    for (let c = 0; c < 4; c++) sorted[4 * p + c] = boxes[4 * i + c]!;
  }
  return sorted;
}

/**
 * Greedy NMS over xyxy `boxes` `[N, 4]`. Returns the kept indices by decreasing score
 * (torchvision `nms`).
 */
export function nms(boxes: BoxArray, scores: ArrayLike<number>, iouThreshold: number): Int32Array {
  return batchedNms(boxes, scores, new Int32Array(checkInputs(boxes, scores, iouThreshold)), iouThreshold);
}

/**
 * Class-wise NMS (torchvision `batched_nms`): a box only suppresses boxes of its own class.
 * Returns one list of kept indices in global order (decreasing score, ties by lower index),
 * not grouped by class. The scores are sorted once and each class runs on its own list, so
 * the cost is the sum of the per-class quadratic costs.
 */
export function batchedNms(
  boxes: BoxArray,
  scores: ArrayLike<number>,
  classes: ArrayLike<number>,
  iouThreshold: number,
): Int32Array {
  const n = checkInputs(boxes, scores, iouThreshold);
  if (classes.length !== n) throw new RangeError(`batchedNms: ${n} boxes but ${classes.length} class ids`);
  const order = sortByScore(scores);
  const sorted = gatherSorted(boxes, order);

  // Positions (in sorted order) of each class, in first-seen order.
  const groups = new Map<number, number[]>();
  for (let p = 0; p < n; p++) {
    const cls = classes[order[p]!]!;
    let group = groups.get(cls);
    if (group === undefined) {
      group = [];
      groups.set(cls, group);
    }
    group.push(p);
  }

  const keptFlags = new Uint8Array(n);
  for (const group of groups.values()) suppressGroup(sorted, Int32Array.from(group), iouThreshold, keptFlags);

  let count = 0;
  for (let p = 0; p < n; p++) count += keptFlags[p]!;
  const keep = new Int32Array(count);
  let k = 0;
  for (let p = 0; p < n; p++) if (keptFlags[p] === 1) keep[k++] = order[p]!;
  return keep;
}
