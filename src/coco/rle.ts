/**
 * Run-length encoded binary masks with the arithmetic of pycocotools' C code
 * (cocodataset/cocoapi at 8c9bcc3, common/maskApi.c), so that encodings, areas, boxes and
 * IoUs equal pycocotools' to the bit.
 *
 * Layout: the mask is read in column-major order (down each column, columns left to right)
 * and `counts` contains the lengths of alternating runs, starting with a run of zeros (which may
 * be empty). Counts are unsigned 32-bit integers in the C code, so a mask may have at most
 * 2^32 - 1 pixels.
 */
import { DataError } from '../utils/errors.ts';
import { describeValue } from './values.ts';

/** A decoded RLE: mask size and run lengths (pycocotools' `RLE` struct). */
export interface Rle {
  height: number;
  width: number;
  counts: Uint32Array;
}

/** Box as [x, y, width, height] in pixels. */
export type BoxXywh = [x: number, y: number, width: number, height: number];

const MAX_PIXELS = 2 ** 32 - 1;
/** The compressed string form uses characters 48 ('0') to 111 ('o'), six bits each. */
const FIRST_CHAR = 48;
const LAST_CHAR = 111;
/** A count or count difference fits in 7 characters of 5 value bits (35 bits with the sign). */
const MAX_CHARS_PER_COUNT = 7;
/** Upsampling factor of rleFrPoly. */
const POLYGON_SCALE = 5;
/**
 * Polygon coordinates are converted to C ints after scaling, so larger values would overflow.
 * This bound keeps 5 * coordinate + 0.5 inside the int32 range.
 */
const MAX_POLYGON_COORDINATE = 4e8;
/** Result of a C (int) cast of NaN on x86-64 (cvttsd2si). See rleFrPoly. */
const INT_MIN = -2147483648;

/**
 * Location of a value for error messages: a string, or an object whose toString() builds it.
 * Hot paths pass objects such as Subscript, so that no text is built for valid input.
 */
export type Where = string | { toString(): string };

export function place(where: Where): string {
  return typeof where === 'string' ? where : where.toString();
}

/** The location `base[key]` for a number key or `base.key` for a string key, built on demand. */
export class Subscript {
  constructor(
    readonly base: Where,
    readonly key: string | number,
  ) {}

  toString(): string {
    return typeof this.key === 'number' ? `${place(this.base)}[${this.key}]` : `${place(this.base)}.${this.key}`;
  }
}

/** Throws DataError unless height and width are non-negative integers with at most 2^32 - 1 pixels. */
function isNonNegativeInteger(value: unknown): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

/** Returns true when height and width are non-negative integers with at most 2^32 - 1 pixels. */
export function isValidMaskSize(height: unknown, width: unknown): boolean {
  return isNonNegativeInteger(height) && isNonNegativeInteger(width) && (height as number) * (width as number) <= MAX_PIXELS;
}

export function checkMaskSize(height: unknown, width: unknown, where: Where): void {
  if (!isNonNegativeInteger(height) || !isNonNegativeInteger(width)) {
    throw new DataError(
      `${place(where)}: mask size must be two non-negative integers [height, width], found [${describeValue(height)}, ${describeValue(width)}]`,
    );
  }
  if ((height as number) * (width as number) > MAX_PIXELS) {
    throw new DataError(`${place(where)}: mask size [${height}, ${width}] has more than 2^32 - 1 pixels`);
  }
}

/** Throws DataError unless the counts add up to height * width. */
function checkCountsSum(counts: Uint32Array, height: number, width: number, where: Where): void {
  let sum = 0;
  for (let j = 0; j < counts.length; j++) sum += counts[j]!;
  if (sum !== height * width) {
    throw new DataError(
      `${place(where)}: RLE counts add up to ${sum} pixels, but size [${height}, ${width}] has ${height * width}`,
    );
  }
}

/**
 * Builds an RLE from uncompressed counts (a JSON list), as pycocotools' frUncompressedRLE
 * does, after checking that every count is a non-negative integer and that they add up to
 * height * width.
 */
export function rleFromCountsList(counts: unknown, height: number, width: number, where: Where): Rle {
  checkMaskSize(height, width, where);
  if (!Array.isArray(counts)) {
    throw new DataError(`${place(where)}: RLE counts must be a string or a list of integers, found ${describeValue(counts)}`);
  }
  const values = new Uint32Array(counts.length);
  for (let j = 0; j < counts.length; j++) {
    const count: unknown = counts[j];
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 0 || count > MAX_PIXELS) {
      throw new DataError(`${place(where)}: RLE counts[${j}] must be a non-negative integer, found ${describeValue(count)}`);
    }
    values[j] = count;
  }
  checkCountsSum(values, height, width, where);
  return { height, width, counts: values };
}

/** Scratch space of decodeCountsString, grown as needed and reused between calls. */
let scratchCounts = new Uint32Array(4096);

/**
 * Decodes pycocotools' compressed counts string (rleFrString) into the shared scratch array
 * and returns the array and the number of counts. Each count is written in groups of 5 bits,
 * least significant first, as characters 48 + bits, with 0x20 set on every character but the
 * last of a count and 0x10 of the last one as the sign. From the fourth count on, the string
 * stores the difference to the count two places earlier.
 *
 * Throws DataError on a character outside '0'..'o', a string that ends inside a count, a
 * negative count, or counts that do not add up to height * width. Garbage input therefore
 * can neither hang nor produce a mask of the wrong size. The scratch array is overwritten
 * by the next call.
 */
export function decodeCountsString(
  text: string,
  height: number,
  width: number,
  where: Where,
): { counts: Uint32Array; length: number } {
  if (scratchCounts.length < text.length) scratchCounts = new Uint32Array(Math.max(text.length, 2 * scratchCounts.length));
  return { counts: scratchCounts, length: decodeCountsInto(text, height, width, where, scratchCounts, 0) };
}

/**
 * Decodes a compressed counts string into target[offset, offset + n) and returns n, with the
 * checks of decodeCountsString. A string of L characters has at most L counts, so the
 * target must have room for L values from `offset`.
 */
export function decodeCountsInto(
  text: string,
  height: number,
  width: number,
  where: Where,
  target: Uint32Array,
  offset: number,
): number {
  checkMaskSize(height, width, where);
  const length = text.length;
  const counts = target;
  let numCounts = 0;
  let position = 0;
  let sum = 0;
  while (position < length) {
    const start = position;
    let value = 0;
    let shift = 0;
    let bits: number;
    // Up to 6 characters (30 bits) the value fits int32 arithmetic.
    do {
      if (position >= length) throw truncatedError(where, start);
      bits = text.charCodeAt(position) - FIRST_CHAR;
      if (bits < 0 || bits > LAST_CHAR - FIRST_CHAR) throw characterError(where, text, position);
      position++;
      if (shift === 30) {
        value = seventhCharacter(value, bits, where, start);
        shift = 35;
        break;
      }
      value |= (bits & 0x1f) << shift;
      shift += 5;
    } while ((bits & 0x20) !== 0);
    // The last group's 0x10 bit is the sign: the value is negative, in two's complement.
    if (shift <= 30 && (bits & 0x10) !== 0) value |= -1 << shift;

    if (numCounts > 2) value += counts[offset + numCounts - 2]!;
    if (value < 0 || value > MAX_PIXELS) {
      throw new DataError(`${place(where)}: compressed RLE counts: count ${numCounts} decodes to ${value}, outside 0 to 2^32 - 1`);
    }
    counts[offset + numCounts++] = value;
    sum += value;
  }
  if (sum !== height * width) {
    throw new DataError(
      `${place(where)}: RLE counts add up to ${sum} pixels, but size [${height}, ${width}] has ${height * width}`,
    );
  }
  return numCounts;
}

/** Adds a count's seventh character (bits 30 to 34) to the 30 bits read so far, beyond int32 arithmetic. */
function seventhCharacter(low: number, bits: number, where: Where, start: number): number {
  if ((bits & 0x20) !== 0) {
    throw new DataError(`${place(where)}: compressed RLE counts: the count at offset ${start} is longer than 7 characters`);
  }
  let value = low + (bits & 0x1f) * 2 ** 30;
  if ((bits & 0x10) !== 0) value -= 2 ** 35;
  return value;
}

function truncatedError(where: Where, start: number): DataError {
  return new DataError(
    `${place(where)}: compressed RLE counts are truncated: the string ends inside the count that starts at offset ${start}`,
  );
}

function characterError(where: Where, text: string, position: number): DataError {
  return new DataError(
    `${place(where)}: compressed RLE counts: character ${JSON.stringify(text[position])} at offset ${position} ` +
      `is not in the range '0' to 'o'`,
  );
}

/** Decodes a compressed counts string into an RLE (see decodeCountsString for the checks). */
export function rleFromString(text: string, height: number, width: number, where: Where): Rle {
  const { counts, length } = decodeCountsString(text, height, width, where);
  return { height, width, counts: counts.slice(0, length) };
}

/** Encodes the counts as pycocotools' compressed string (rleToString). */
export function rleToString(rle: Rle): string {
  const counts = rle.counts;
  const codes = new Uint8Array(counts.length * MAX_CHARS_PER_COUNT);
  let length = 0;
  for (let i = 0; i < counts.length; i++) {
    let value = counts[i]!;
    if (i > 2) value -= counts[i - 2]!;
    let more = true;
    while (more) {
      // value & 0x1f and value >> 5 of a 64-bit long, written for values beyond 32 bits.
      const bits = value - Math.floor(value / 32) * 32;
      value = Math.floor(value / 32);
      more = (bits & 0x10) !== 0 ? value !== -1 : value !== 0;
      codes[length++] = (more ? bits | 0x20 : bits) + FIRST_CHAR;
    }
  }
  return charCodesToString(codes.subarray(0, length));
}

function charCodesToString(codes: Uint8Array): string {
  const CHUNK = 8192;
  let text = '';
  for (let start = 0; start < codes.length; start += CHUNK) {
    text += String.fromCharCode.apply(null, codes.subarray(start, start + CHUNK) as unknown as number[]);
  }
  return text;
}

/**
 * Encodes a binary mask given in row-major order (`mask[y * width + x]`), as rleEncode does
 * with pycocotools' column-major array. Every nonzero value counts as foreground.
 */
export function rleEncode(mask: ArrayLike<number>, height: number, width: number): Rle {
  const counts = new Uint32Array(height * width + 1);
  let numCounts = 0;
  let previous = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const value = mask[y * width + x]! !== 0 ? 1 : 0;
      if (value !== previous) {
        counts[numCounts++] = run;
        run = 0;
        previous = value;
      }
      run++;
    }
  }
  counts[numCounts++] = run;
  return { height, width, counts: counts.slice(0, numCounts) };
}

/** Decodes an RLE into a row-major mask of 0 and 1 (`mask[y * width + x]`). */
export function rleDecode(rle: Rle): Uint8Array {
  const { height, width, counts } = rle;
  const mask = new Uint8Array(height * width);
  let pixel = 0;
  let value = 0;
  for (let j = 0; j < counts.length; j++) {
    const end = Math.min(pixel + counts[j]!, height * width);
    if (value === 1) {
      for (; pixel < end; pixel++) {
        const y = pixel % height;
        mask[y * width + (pixel - y) / height] = 1;
      }
    }
    pixel = end;
    value = 1 - value;
  }
  return mask;
}

/** Returns the number of foreground pixels (rleArea). */
export function rleArea(rle: Rle): number {
  return countsArea(rle.counts, 0, rle.counts.length);
}

/** Returns the number of foreground pixels of counts[start, start + length). */
export function countsArea(counts: Uint32Array, start: number, length: number): number {
  let area = 0;
  for (let j = start + 1; j < start + length; j += 2) area += counts[j]!;
  return area;
}

/**
 * Writes the tight box [x, y, width, height] of the foreground to `out` at `offset`
 * (rleToBbox), all zeros for an empty mask. A run that spans columns makes the box cover the
 * full height, as in pycocotools.
 */
export function rleToBboxInto(rle: Rle, out: Float64Array, offset: number): void {
  countsToBboxInto(rle.counts, 0, rle.counts.length, rle.height, rle.width, out, offset);
}

/** rleToBboxInto for counts[start, start + length) of a height x width mask. */
export function countsToBboxInto(
  counts: Uint32Array,
  start: number,
  length: number,
  height: number,
  width: number,
  out: Float64Array,
  offset: number,
): void {
  const m = length - (length % 2);
  if (m === 0 || height === 0) {
    out.fill(0, offset, offset + 4);
    return;
  }

  let xs = width;
  let ys = height;
  let xe = 0;
  let ye = 0;
  let cc = 0;
  let xp = 0;
  for (let j = 0; j < m; j++) {
    cc += counts[start + j]!;
    // The C code computes in unsigned ints, so t wraps around when a leading count is 0.
    const t = (cc - (j & 1)) >>> 0;
    // t / height is exact enough for floor below 2^32 pixels, and faster than t % height.
    const x = Math.floor(t / height);
    const y = t - x * height;
    if ((j & 1) === 0) xp = x;
    else if (xp < x) {
      ys = 0;
      ye = height - 1;
    }
    xs = Math.min(xs, x);
    xe = Math.max(xe, x);
    ys = Math.min(ys, y);
    ye = Math.max(ye, y);
  }
  out[offset] = xs;
  out[offset + 1] = ys;
  out[offset + 2] = xe - xs + 1;
  out[offset + 3] = ye - ys + 1;
}

export function rleToBbox(rle: Rle): BoxXywh {
  const box = new Float64Array(4);
  rleToBboxInto(rle, box, 0);
  return [box[0]!, box[1]!, box[2]!, box[3]!];
}

/**
 * Merges masks of one size by union, or by intersection when `intersect` is true (rleMerge).
 * Merging no mask gives an empty 0 x 0 RLE, as in pycocotools. Throws DataError when the
 * sizes differ (pycocotools silently returns an empty RLE then).
 */
export function rleMerge(rles: readonly Rle[], intersect: boolean, where: Where = 'merge'): Rle {
  if (rles.length === 0) return { height: 0, width: 0, counts: new Uint32Array(0) };
  const { height, width } = rles[0]!;
  if (rles.length === 1) return { height, width, counts: rles[0]!.counts.slice() };

  let merged = rles[0]!.counts;
  for (let i = 1; i < rles.length; i++) {
    const other = rles[i]!;
    if (other.height !== height || other.width !== width) {
      throw new DataError(
        `${place(where)}: cannot merge masks of different sizes: [${height}, ${width}] and [${other.height}, ${other.width}]`,
      );
    }
    merged = mergeTwo(merged, other.counts, intersect);
  }
  return { height, width, counts: merged };
}

function mergeTwo(a: Uint32Array, b: Uint32Array, intersect: boolean): Uint32Array {
  // Every run boundary of the result is a boundary of a or of b.
  const out = new Uint32Array(a.length + b.length + 1);
  let m = 0;
  let ca = a[0]!;
  let cb = b[0]!;
  let va = false;
  let vb = false;
  let v = false;
  let ia = 1;
  let ib = 1;
  let cc = 0;
  let remaining = 1;
  while (remaining > 0) {
    const c = Math.min(ca, cb);
    cc += c;
    remaining = 0;
    ca -= c;
    if (ca === 0 && ia < a.length) {
      ca = a[ia++]!;
      va = !va;
    }
    remaining += ca;
    cb -= c;
    if (cb === 0 && ib < b.length) {
      cb = b[ib++]!;
      vb = !vb;
    }
    remaining += cb;
    const previous: boolean = v;
    v = intersect ? va && vb : va || vb;
    if (v !== previous || remaining === 0) {
      out[m++] = cc;
      cc = 0;
    }
  }
  return out.slice(0, m);
}

/**
 * Returns |dt ∩ gt| / |dt ∪ gt| of two masks of equal size, or |dt ∩ gt| / |dt| when `crowd`
 * is true. Masks that do not intersect give 0. This is the inner loop of rleIou.
 */
export function rlePairIou(dt: Rle, gt: Rle, crowd: boolean): number {
  return countsPairIou(dt.counts, 0, dt.counts.length, gt.counts, 0, gt.counts.length, crowd ? rleArea(dt) : -1);
}

/**
 * rlePairIou for counts a[aStart, aStart + aLength) and b[bStart, bStart + bLength). A
 * non-negative `crowdDtArea` is the detection's area and makes the union that area.
 */
export function countsPairIou(
  a: Uint32Array,
  aStart: number,
  aLength: number,
  b: Uint32Array,
  bStart: number,
  bLength: number,
  crowdDtArea: number,
): number {
  const aEnd = aStart + aLength;
  const bEnd = bStart + bLength;
  let ca = a[aStart]!;
  let cb = b[bStart]!;
  let va = false;
  let vb = false;
  let ia = aStart + 1;
  let ib = bStart + 1;
  let intersection = 0;
  let union = 0;
  let remaining = 1;
  while (remaining > 0) {
    const c = Math.min(ca, cb);
    if (va || vb) {
      union += c;
      if (va && vb) intersection += c;
    }
    remaining = 0;
    ca -= c;
    if (ca === 0 && ia < aEnd) {
      ca = a[ia++]!;
      va = !va;
    }
    remaining += ca;
    cb -= c;
    if (cb === 0 && ib < bEnd) {
      cb = b[ib++]!;
      vb = !vb;
    }
    remaining += cb;
  }
  if (intersection === 0) return 0;
  return intersection / (crowdDtArea >= 0 ? crowdDtArea : union);
}

/**
 * Box IoU of every detection box with every ground-truth box (bbIou), boxes packed as
 * [x, y, w, h, ...] (the first numDts and numGts of them). Returns a row-major D x G matrix.
 * For a crowd region the union is the detection's area.
 */
export function boxIouMatrix(
  dtBoxes: Float64Array,
  gtBoxes: Float64Array,
  iscrowd: ArrayLike<number>,
  numDts = dtBoxes.length / 4,
  numGts = gtBoxes.length / 4,
): Float64Array {
  const ious = new Float64Array(numDts * numGts);
  for (let g = 0; g < numGts; g++) {
    const gx = gtBoxes[g * 4]!;
    const gy = gtBoxes[g * 4 + 1]!;
    const gw = gtBoxes[g * 4 + 2]!;
    const gh = gtBoxes[g * 4 + 3]!;
    const gtArea = gw * gh;
    const crowd = iscrowd[g] !== 0;
    for (let d = 0; d < numDts; d++) {
      const dx = dtBoxes[d * 4]!;
      const dy = dtBoxes[d * 4 + 1]!;
      const dw = dtBoxes[d * 4 + 2]!;
      const dh = dtBoxes[d * 4 + 3]!;
      const w = Math.min(dw + dx, gw + gx) - Math.max(dx, gx);
      if (w <= 0) continue;
      const h = Math.min(dh + dy, gh + gy) - Math.max(dy, gy);
      if (h <= 0) continue;
      const intersection = w * h;
      const dtArea = dw * dh;
      ious[d * numGts + g] = intersection / (crowd ? dtArea : dtArea + gtArea - intersection);
    }
  }
  return ious;
}

/**
 * Mask IoU of every detection with every ground-truth mask (rleIou): a row-major D x G matrix.
 * As in pycocotools, pairs whose mask boxes do not overlap get 0 without a pixel count, and
 * overlapping pairs of different mask sizes get -1.
 */
export function rleIouMatrix(dts: readonly Rle[], gts: readonly Rle[], iscrowd: ArrayLike<number>): Float64Array {
  const dtBoxes = new Float64Array(dts.length * 4);
  const gtBoxes = new Float64Array(gts.length * 4);
  dts.forEach((rle, d) => rleToBboxInto(rle, dtBoxes, d * 4));
  gts.forEach((rle, g) => rleToBboxInto(rle, gtBoxes, g * 4));
  const ious = boxIouMatrix(dtBoxes, gtBoxes, iscrowd);
  const numGts = gts.length;
  for (let d = 0; d < dts.length; d++) {
    for (let g = 0; g < numGts; g++) {
      if (!(ious[d * numGts + g]! > 0)) continue;
      const dt = dts[d]!;
      const gt = gts[g]!;
      if (dt.height !== gt.height || dt.width !== gt.width) {
        ious[d * numGts + g] = -1;
        continue;
      }
      ious[d * numGts + g] = rlePairIou(dt, gt, iscrowd[g] !== 0);
    }
  }
  return ious;
}

/** Returns true for a polygon that checkPolygon accepts. */
export function isValidPolygon(polygon: unknown): polygon is number[] {
  if (!Array.isArray(polygon) || polygon.length % 2 !== 0) return false;
  for (let j = 0; j < polygon.length; j++) {
    const value: unknown = polygon[j];
    if (typeof value !== 'number' || !(Math.abs(value) <= MAX_POLYGON_COORDINATE)) return false;
  }
  return true;
}

/**
 * Checks one polygon [x1, y1, x2, y2, ...]: an even number of finite coordinates small enough
 * for rleFrPoly's int arithmetic. Throws DataError naming `where` otherwise.
 */
export function checkPolygon(polygon: unknown, where: Where): asserts polygon is number[] {
  if (!Array.isArray(polygon)) {
    throw new DataError(`${place(where)}: expected a polygon [x1, y1, x2, y2, ...], found ${describeValue(polygon)}`);
  }
  if (polygon.length % 2 !== 0) {
    throw new DataError(
      `${place(where)}: a polygon needs an even number of coordinates (x, y pairs), found ${polygon.length}`,
    );
  }
  for (let j = 0; j < polygon.length; j++) {
    const value: unknown = polygon[j];
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new DataError(`${place(where)}[${j}]: expected a finite coordinate, found ${describeValue(value)}`);
    }
    if (Math.abs(value) > MAX_POLYGON_COORDINATE) {
      throw new DataError(`${place(where)}[${j}]: coordinate ${value} is outside ±${MAX_POLYGON_COORDINATE}`);
    }
  }
}

/** Scratch arrays of rleFrPoly, reused between calls because polygons are rasterised by the 10^4. */
const polygonScratch: Int32Array[] = [new Int32Array(1024), new Int32Array(1024)];
let boundaryScratch = new Uint32Array(4096);

function scratchInt32(slot: number, size: number): Int32Array {
  if (polygonScratch[slot]!.length < size) polygonScratch[slot] = new Int32Array(Math.max(size, 2 * polygonScratch[slot]!.length));
  return polygonScratch[slot]!;
}

function scratchUint32(size: number): Uint32Array {
  if (boundaryScratch.length < size) boundaryScratch = new Uint32Array(Math.max(size, 2 * boundaryScratch.length));
  return boundaryScratch;
}

/**
 * Rasterises a polygon [x1, y1, x2, y2, ...] into an RLE exactly as pycocotools' rleFrPoly:
 * the outline is upsampled 5 times, traced point by point, and each crossing of a pixel
 * column centre sets the first pixel below it. The caller checks the polygon (checkPolygon).
 */
export function rleFrPoly(xy: ArrayLike<number>, height: number, width: number): Rle {
  const { counts, length } = rasterisePolygon(xy, height, width);
  return { height, width, counts: counts.slice(0, length) };
}

/** Returns the upsampled x of an outline point t steps along an edge along y, with C's (int) truncation. */
function traceU(xs: number, s: number, t: number): number {
  return Math.trunc(xs + s * t + 0.5);
}

/** Returns the first pixel row below an outline point at upsampled y `v`, clamped to [0, height]. */
function crossingRow(v: number, height: number): number {
  let yd = (v + 0.5) / POLYGON_SCALE - 0.5;
  if (yd < 0) yd = 0;
  else if (yd > height) yd = height;
  return Math.ceil(yd);
}

/** rleFrPoly into a scratch array that the next call overwrites: counts[0, length). */
export function rasterisePolygon(xy: ArrayLike<number>, height: number, width: number): { counts: Uint32Array; length: number } {
  const k = xy.length >> 1;
  const scale = POLYGON_SCALE;

  // Vertices on the upsampled grid, with C's (int) truncation.
  const x = scratchInt32(0, k + 1);
  const y = scratchInt32(1, k + 1);
  for (let j = 0; j < k; j++) x[j] = Math.trunc(scale * xy[j * 2]! + 0.5);
  for (let j = 0; j < k; j++) y[j] = Math.trunc(scale * xy[j * 2 + 1]! + 0.5);
  x[k] = x[0]!;
  y[k] = y[0]!;

  // pycocotools traces every grid point along each edge, from the edge's first vertex to its
  // last, and wherever x changes between two consecutive points, tests for a column-centre
  // crossing. The loop below finds the same crossings without visiting every point.
  let numPoints = 0;
  for (let j = 0; j < k; j++) numPoints += Math.max(Math.abs(x[j]! - x[j + 1]!), Math.abs(y[j]! - y[j + 1]!)) + 1;
  const boundaries = scratchUint32(numPoints + 1);
  let m = 0;
  let first = true;
  let previousU = 0;
  let previousV = 0;
  for (let j = 0; j < k; j++) {
    let xs = x[j]!;
    let xe = x[j + 1]!;
    let ys = y[j]!;
    let ye = y[j + 1]!;
    const dx = Math.abs(xe - xs);
    const dy = Math.abs(ys - ye);
    const alongX = dx >= dy;
    const flip = (alongX && xs > xe) || (!alongX && ys > ye);
    if (flip) {
      const swapX = xs;
      xs = xe;
      xe = swapX;
      const swapY = ys;
      ys = ye;
      ye = swapY;
    }
    const s = alongX ? (ye - ys) / dx : (xe - xs) / dy;
    const steps = alongX ? dx : dy;
    // The edge's first point, compared with the last point of the previous edge.
    {
      const t = flip ? steps : 0;
      let u: number;
      let v: number;
      if (alongX) {
        u = t + xs;
        // An edge of length 0 gives s = 0 / 0 = NaN, whose (int) cast is INT_MIN on x86-64.
        // That point shares its x with both neighbours, so its y is never used below.
        v = dx === 0 ? INT_MIN : Math.trunc(ys + s * t + 0.5);
      } else {
        v = t + ys;
        u = traceU(xs, s, t);
      }
      if (!first && u !== previousU) {
        // Back on the pixel grid: a crossing of a column centre sets the first pixel below it.
        let xd = u < previousU ? u : u - 1;
        xd = (xd + 0.5) / scale - 0.5;
        if (Math.floor(xd) === xd && xd >= 0 && xd <= width - 1) {
          boundaries[m++] = xd * height + crossingRow(v < previousV ? v : previousV, height);
        }
      }
      first = false;
      previousU = u;
      previousV = v;
    }
    if (steps === 0) continue;

    // The other points. Between consecutive points with u = c and u = c + du (|du| = 1), the
    // smaller u is r = c or c - 1, and (r + 0.5) / 5 - 0.5 is an integer column exactly when
    // r = 5 * column + 2. So only every fifth change of u can cross a column centre.
    if (alongX) {
      // u moves by one at every step, from the edge's first vertex x[j] in direction du.
      const du = flip ? -1 : 1;
      const uStart = x[j]!;
      const residue = du > 0 ? 3 - uStart : uStart - 2;
      let d = ((residue % scale) + scale) % scale;
      if (d === 0) d = scale;
      for (; d <= dx; d += scale) {
        const r = du > 0 ? uStart + d - 1 : uStart - d;
        const column = (r - 2) / scale;
        if (column < 0 || column > width - 1) continue;
        const vBefore = Math.trunc(ys + s * (flip ? dx - d + 1 : d - 1) + 0.5);
        const vAt = Math.trunc(ys + s * (flip ? dx - d : d) + 0.5);
        boundaries[m++] = column * height + crossingRow(vAt < vBefore ? vAt : vBefore, height);
      }
      previousU = uStart + du * dx;
      previousV = Math.trunc(ys + s * (flip ? 0 : dx) + 0.5);
    } else {
      // u(d) is monotonic and moves by at most one per step (|s| < 1), so the step where it
      // first passes c is found by binary search.
      const uFirst = previousU;
      const uLast = traceU(xs, s, flip ? 0 : dy);
      if (uLast !== uFirst) {
        const du = uLast > uFirst ? 1 : -1;
        let c = du > 0 ? uFirst + ((((2 - uFirst) % scale) + scale) % scale) : uFirst - ((((uFirst - 3) % scale) + scale) % scale);
        let low = 1;
        for (; du > 0 ? c < uLast : c > uLast; c += scale * du) {
          const target = c + du;
          let high = dy;
          while (low < high) {
            const middle = (low + high) >>> 1;
            const u = traceU(xs, s, flip ? dy - middle : middle);
            if (du > 0 ? u >= target : u <= target) high = middle;
            else low = middle + 1;
          }
          const column = ((du > 0 ? c : c - 1) - 2) / scale;
          if (column < 0 || column > width - 1) continue;
          const vBefore = (flip ? dy - low + 1 : low - 1) + ys;
          const vAt = (flip ? dy - low : low) + ys;
          boundaries[m++] = column * height + crossingRow(vAt < vBefore ? vAt : vBefore, height);
        }
      }
      previousU = uLast;
      previousV = (flip ? 0 : dy) + ys;
    }
  }

  // Sorted column-major positions of the crossings are the run boundaries.
  boundaries[m] = height * width;
  boundaries.subarray(0, m + 1).sort();
  let previous = 0;
  for (let j = 0; j <= m; j++) {
    const value = boundaries[j]!;
    boundaries[j] = value - previous;
    previous = value;
  }
  // An empty run joins its neighbours: the run after it is added to the run before it.
  // Counts are written in place, never ahead of the run being read.
  let numCounts = 1;
  let j = 1;
  while (j <= m) {
    if (boundaries[j]! > 0) {
      boundaries[numCounts++] = boundaries[j++]!;
    } else {
      j++;
      if (j <= m) boundaries[numCounts - 1] += boundaries[j++]!;
    }
  }
  return { counts: boundaries, length: numCounts };
}

/** Rasterises a box [x, y, width, height] as the polygon of its corners (rleFrBbox). */
export function rleFrBbox(box: ArrayLike<number>, height: number, width: number): Rle {
  const xs = box[0]!;
  const xe = xs + box[2]!;
  const ys = box[1]!;
  const ye = ys + box[3]!;
  return rleFrPoly([xs, ys, xs, ye, xe, ye, xe, ys], height, width);
}
