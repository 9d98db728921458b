/**
 * The masks of one evaluation group packed into reusable buffers. Mask evaluation decodes
 * 10^5 and more RLEs, and one typed array per mask made garbage collection its largest cost.
 */
import {
  countsArea,
  countsToBboxInto,
  decodeCountsInto,
  rasterisePolygon,
  type Rle,
  type Where,
} from './rle.ts';

function grownFloat64(array: Float64Array, size: number): Float64Array {
  if (array.length >= size) return array;
  const grown = new Float64Array(Math.max(size, 2 * array.length));
  grown.set(array);
  return grown;
}

function grownInt32(array: Int32Array, size: number): Int32Array {
  if (array.length >= size) return array;
  const grown = new Int32Array(Math.max(size, 2 * array.length));
  grown.set(array);
  return grown;
}

/** A list of masks whose counts share one buffer, with each mask's size, area and tight box. */
export class PackedRles {
  counts: Uint32Array = new Uint32Array(1 << 16);
  /** Mask i's counts are counts[start[i], start[i] + length[i]). */
  start: Int32Array = new Int32Array(64);
  length: Int32Array = new Int32Array(64);
  height: Float64Array = new Float64Array(64);
  width: Float64Array = new Float64Array(64);
  area: Float64Array = new Float64Array(64);
  /** [x, y, width, height] of mask i at boxes[4 * i]. */
  boxes: Float64Array = new Float64Array(256);
  /**
   * Foreground runs as [first pixel, end pixel) pairs in column-major pixel order: mask i's
   * runs are pairs intervalStart[i] .. intervalStart[i] + intervalCount[i] of `intervals`.
   */
  intervals: Uint32Array = new Uint32Array(1 << 15);
  intervalStart: Int32Array = new Int32Array(64);
  intervalCount: Int32Array = new Int32Array(64);
  size = 0;
  private used = 0;
  private usedIntervals = 0;

  /** Empties the list; the buffers are kept for reuse. */
  clear(): void {
    this.size = 0;
    this.used = 0;
    this.usedIntervals = 0;
  }

  private reserveCounts(extra: number): void {
    if (this.counts.length >= this.used + extra) return;
    const grown = new Uint32Array(Math.max(this.used + extra, 2 * this.counts.length));
    grown.set(this.counts.subarray(0, this.used));
    this.counts = grown;
  }

  private finishMask(height: number, width: number, numCounts: number, knownBoxes?: Float64Array, knownOffset = 0): void {
    const i = this.size;
    const capacity = i + 1;
    this.start = grownInt32(this.start, capacity);
    this.length = grownInt32(this.length, capacity);
    this.height = grownFloat64(this.height, capacity);
    this.width = grownFloat64(this.width, capacity);
    this.area = grownFloat64(this.area, capacity);
    this.boxes = grownFloat64(this.boxes, 4 * capacity);

    this.start[i] = this.used;
    this.length[i] = numCounts;
    this.height[i] = height;
    this.width[i] = width;
    this.area[i] = countsArea(this.counts, this.used, numCounts);
    if (knownBoxes === undefined) countsToBboxInto(this.counts, this.used, numCounts, height, width, this.boxes, 4 * i);
    else for (let k = 0; k < 4; k++) this.boxes[4 * i + k] = knownBoxes[knownOffset + k]!;
    this.addIntervals(i, numCounts);
    this.used += numCounts;
    this.size++;
  }

  /** Records the foreground runs of the mask whose counts were just written at `used`. */
  private addIntervals(i: number, numCounts: number): void {
    this.intervalStart = grownInt32(this.intervalStart, i + 1);
    this.intervalCount = grownInt32(this.intervalCount, i + 1);
    const needed = 2 * this.usedIntervals + numCounts + 1;
    if (this.intervals.length < needed) {
      const grown = new Uint32Array(Math.max(needed, 2 * this.intervals.length));
      grown.set(this.intervals.subarray(0, 2 * this.usedIntervals));
      this.intervals = grown;
    }
    const counts = this.counts;
    const intervals = this.intervals;
    let write = 2 * this.usedIntervals;
    let pixel = 0;
    for (let j = 0; j < numCounts; j++) {
      const count = counts[this.used + j]!;
      if (j % 2 === 1 && count > 0) {
        intervals[write++] = pixel;
        intervals[write++] = pixel + count;
      }
      pixel += count;
    }
    this.intervalStart[i] = this.usedIntervals;
    this.intervalCount[i] = write / 2 - this.usedIntervals;
    this.usedIntervals = write / 2;
  }

  /**
   * Adds a mask from pycocotools' compressed counts string, checked as rleFromString does.
   * A caller that knows the mask's box passes it at knownBoxes[knownOffset..+4).
   */
  addString(text: string, height: number, width: number, where: Where, knownBoxes?: Float64Array, knownOffset = 0): void {
    this.reserveCounts(text.length);
    const numCounts = decodeCountsInto(text, height, width, where, this.counts, this.used);
    this.finishMask(height, width, numCounts, knownBoxes, knownOffset);
  }

  /** Adds a polygon, rasterised as rleFrPoly does; see there for the checks the caller makes. */
  addPolygon(xy: ArrayLike<number>, height: number, width: number): void {
    const { counts, length } = rasterisePolygon(xy, height, width);
    this.reserveCounts(length);
    this.counts.set(length === counts.length ? counts : counts.subarray(0, length), this.used);
    this.finishMask(height, width, length);
  }

  /** Adds a decoded mask. */
  addRle(rle: Rle): void {
    this.reserveCounts(rle.counts.length);
    this.counts.set(rle.counts, this.used);
    this.finishMask(rle.height, rle.width, rle.counts.length);
  }
}

/** Returns the index of the first run among `count` runs from `first` whose end pixel is after `pixel`. */
function firstRunEndingAfter(intervals: Uint32Array, first: number, count: number, pixel: number): number {
  let low = first;
  let high = first + count;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (intervals[2 * middle + 1]! <= pixel) low = middle + 1;
    else high = middle;
  }
  return low;
}

/**
 * Returns the mask IoU of detection d in `dts` with object g in `gts`, for a pair whose boxes
 * overlap, with the integers of pycocotools' rleIou: -1 for masks of different sizes,
 * intersection / union, or intersection / detection area for a crowd object. Only runs in
 * the columns both boxes share are compared, because no other pixel can be in both masks.
 * The union is |dt| + |gt| - intersection, the pixel count that the C code's walk reaches.
 */
export function maskPairIou(dts: PackedRles, d: number, gts: PackedRles, g: number, crowd: boolean): number {
  const height = dts.height[d]!;
  if (height !== gts.height[g] || dts.width[d] !== gts.width[g]) return -1;

  const firstColumn = Math.max(dts.boxes[4 * d]!, gts.boxes[4 * g]!);
  const endColumn = Math.min(dts.boxes[4 * d]! + dts.boxes[4 * d + 2]!, gts.boxes[4 * g]! + gts.boxes[4 * g + 2]!);
  const fromPixel = firstColumn * height;
  const toPixel = endColumn * height;

  const a = dts.intervals;
  const b = gts.intervals;
  const aEnd = dts.intervalStart[d]! + dts.intervalCount[d]!;
  const bEnd = gts.intervalStart[g]! + gts.intervalCount[g]!;
  let i = firstRunEndingAfter(a, dts.intervalStart[d]!, dts.intervalCount[d]!, fromPixel);
  let j = firstRunEndingAfter(b, gts.intervalStart[g]!, gts.intervalCount[g]!, fromPixel);
  let intersection = 0;
  while (i < aEnd && j < bEnd) {
    const aFirst = a[2 * i]!;
    const bFirst = b[2 * j]!;
    if (aFirst >= toPixel || bFirst >= toPixel) break;
    const aLast = a[2 * i + 1]!;
    const bLast = b[2 * j + 1]!;
    const overlap = Math.min(aLast, bLast) - Math.max(aFirst, bFirst);
    if (overlap > 0) intersection += overlap;
    if (aLast < bLast) i++;
    else j++;
  }
  if (intersection === 0) return 0;
  const dtArea = dts.area[d]!;
  return intersection / (crowd ? dtArea : dtArea + gts.area[g]! - intersection);
}
