/**
 * pycocotools' mask API (pycocotools.mask) on COCO JSON objects: encode, decode, merge, area,
 * toBbox, iou and frPyObjects, with the same results as pycocotools at cocodataset/cocoapi
 * 8c9bcc3. RLEs come back in the compressed form `{ size: [height, width], counts: string }`.
 *
 * Binary masks are row-major (`data[y * width + x]`), the layout of JavaScript image data,
 * whereas pycocotools takes and returns column-major numpy arrays. The RLE itself is
 * column-major in both.
 *
 * Where pycocotools crashes or silently returns nonsense on invalid input, these functions
 * throw DataError instead. That covers odd polygon lengths (pycocotools drops the last
 * coordinate), RLE counts that do not add up to height * width, invalid compressed strings
 * and merges of masks of different sizes.
 */
import { DataError } from '../utils/errors.ts';
import {
  boxIouMatrix,
  checkMaskSize,
  checkPolygon,
  countsArea,
  countsToBboxInto,
  decodeCountsString,
  isValidMaskSize,
  place,
  rleArea,
  rleDecode,
  rleEncode,
  rleFrBbox,
  rleFromCountsList,
  rleFromString,
  rleFrPoly,
  rleIouMatrix,
  rleMerge,
  rleToBbox,
  rleToBboxInto,
  rleToString,
  Subscript,
  type BoxXywh,
  type Rle,
  type Where,
} from './rle.ts';
import type { CocoRle } from './types.ts';
import { describeValue } from './values.ts';

export type { BoxXywh, Rle } from './rle.ts';

/** An RLE in pycocotools' compressed form. */
export interface CompressedRle {
  size: [height: number, width: number];
  counts: string;
}

/** A binary mask in row-major order: pixel (x, y) is `data[y * width + x]`, nonzero is foreground. */
export interface BinaryMask {
  height: number;
  width: number;
  data: Uint8Array;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks an RLE object's shape and size; returns its height, width and counts (not yet checked). */
export function readRleObject(rle: unknown, where: Where): { height: number; width: number; counts: unknown } {
  if (!isRecord(rle) || !Array.isArray(rle['size']) || rle['counts'] === undefined) {
    throw new DataError(`${place(where)}: expected an RLE object {size: [height, width], counts}, found ${describeValue(rle)}`);
  }
  const size = rle['size'];
  if (size.length !== 2) {
    throw new DataError(`${place(where)}.size: expected [height, width], found ${describeValue(size)}`);
  }
  const [height, width] = size as [unknown, unknown];
  if (!isValidMaskSize(height, width)) checkMaskSize(height, width, new Subscript(where, 'size'));
  return { height: height as number, width: width as number, counts: rle['counts'] };
}

/**
 * Parses an RLE object `{ size: [height, width], counts }` with compressed (string) or
 * uncompressed (list) counts, checking that the counts cover exactly height * width pixels.
 * `where` names the object in error messages.
 */
export function toRle(rle: unknown, where: Where = 'RLE'): Rle {
  const { height, width, counts } = readRleObject(rle, where);
  const countsWhere = new Subscript(where, 'counts');
  if (typeof counts === 'string') return rleFromString(counts, height, width, countsWhere);
  return rleFromCountsList(counts, height, width, countsWhere);
}

/**
 * Checks an RLE object as toRle does and returns its size, area and tight box, without
 * keeping the decoded counts. `box` receives [x, y, width, height].
 */
export function rleObjectAreaAndBox(rle: unknown, box: Float64Array, where: Where): { height: number; width: number; area: number } {
  const { height, width, counts } = readRleObject(rle, where);
  const countsWhere = new Subscript(where, 'counts');
  if (typeof counts !== 'string') {
    const parsed = rleFromCountsList(counts, height, width, countsWhere);
    rleToBboxInto(parsed, box, 0);
    return { height, width, area: rleArea(parsed) };
  }
  const decoded = decodeCountsString(counts, height, width, countsWhere);
  countsToBboxInto(decoded.counts, 0, decoded.length, height, width, box, 0);
  return { height, width, area: countsArea(decoded.counts, 0, decoded.length) };
}

/** Converts an Rle to the compressed JSON form. */
export function fromRle(rle: Rle): CompressedRle {
  return { size: [rle.height, rle.width], counts: rleToString(rle) };
}

/** Encodes a binary mask (row-major, nonzero is foreground) as a compressed RLE. */
export function encode(mask: BinaryMask): CompressedRle {
  checkMaskSize(mask.height, mask.width, 'encode');
  if (mask.data.length !== mask.height * mask.width) {
    throw new DataError(
      `encode: mask data has ${mask.data.length} values, but height ${mask.height} x width ${mask.width} needs ${mask.height * mask.width}`,
    );
  }
  return fromRle(rleEncode(mask.data, mask.height, mask.width));
}

/** Decodes an RLE (compressed or uncompressed) into a row-major mask of 0 and 1. */
export function decode(rle: CocoRle): BinaryMask {
  const parsed = toRle(rle, 'decode');
  return { height: parsed.height, width: parsed.width, data: rleDecode(parsed) };
}

/** Merges RLEs of one size by union, or by intersection when `intersect` is true. */
export function merge(rles: readonly CocoRle[], intersect = false): CompressedRle {
  const parsed = rles.map((rle, i) => toRle(rle, `merge: rles[${i}]`));
  return fromRle(rleMerge(parsed, intersect, 'merge'));
}

/** Returns the foreground pixel count of an RLE, or of each RLE in a list. */
export function area(rle: CocoRle): number;
export function area(rles: readonly CocoRle[]): number[];
export function area(rles: CocoRle | readonly CocoRle[]): number | number[] {
  if (Array.isArray(rles)) return rles.map((rle, i) => rleArea(toRle(rle, `area: rles[${i}]`)));
  return rleArea(toRle(rles, 'area'));
}

/** Returns the tight box [x, y, width, height] of an RLE, or of each RLE in a list (zeros when empty). */
export function toBbox(rle: CocoRle): BoxXywh;
export function toBbox(rles: readonly CocoRle[]): BoxXywh[];
export function toBbox(rles: CocoRle | readonly CocoRle[]): BoxXywh | BoxXywh[] {
  if (Array.isArray(rles)) return rles.map((rle, i) => rleToBbox(toRle(rle, `toBbox: rles[${i}]`)));
  return rleToBbox(toRle(rles, 'toBbox'));
}

function isBoxList(objects: readonly unknown[]): objects is number[][] {
  return objects.every((object) => Array.isArray(object) && object.length === 4);
}

function packBoxes(boxes: readonly number[][], where: string): Float64Array {
  const packed = new Float64Array(boxes.length * 4);
  boxes.forEach((box, n) => {
    if (!box.every((value) => typeof value === 'number' && !Number.isNaN(value))) {
      throw new DataError(`${where}[${n}]: expected 4 numbers [x, y, width, height], found ${describeValue(box)}`);
    }
    packed.set(box, n * 4);
  });
  return packed;
}

/**
 * Returns the IoU of every detection with every ground-truth object as D rows of G values:
 * both lists are RLEs, or both are boxes [x, y, width, height]. `iscrowd[g]` nonzero makes the
 * union the detection's own area. Like pycocotools, an empty list on either side gives [],
 * and overlapping masks of different sizes give -1.
 */
export function iou(
  dt: readonly CocoRle[] | readonly number[][],
  gt: readonly CocoRle[] | readonly number[][],
  iscrowd: ArrayLike<number | boolean>,
): number[][] {
  if (dt.length === 0 || gt.length === 0) return [];
  if (iscrowd.length !== gt.length) {
    throw new DataError(`iou: iscrowd has ${iscrowd.length} flags for ${gt.length} ground-truth objects`);
  }
  const crowd = Uint8Array.from({ length: gt.length }, (_, g) => (iscrowd[g] ? 1 : 0));
  const dtBoxes = isBoxList(dt);
  const gtBoxes = isBoxList(gt);
  if (dtBoxes !== gtBoxes) {
    throw new DataError('iou: dt and gt must both be RLEs or both be boxes [x, y, width, height]');
  }
  let matrix: Float64Array;
  if (dtBoxes) {
    matrix = boxIouMatrix(packBoxes(dt as number[][], 'iou: dt'), packBoxes(gt as number[][], 'iou: gt'), crowd);
  } else {
    const dtRles = (dt as readonly CocoRle[]).map((rle, d) => toRle(rle, `iou: dt[${d}]`));
    const gtRles = (gt as readonly CocoRle[]).map((rle, g) => toRle(rle, `iou: gt[${g}]`));
    matrix = rleIouMatrix(dtRles, gtRles, crowd);
  }
  return Array.from({ length: dt.length }, (_, d) => Array.from(matrix.subarray(d * gt.length, (d + 1) * gt.length)));
}

function checkImageSize(height: number, width: number, where: string): void {
  checkMaskSize(height, width, where);
  if (height === 0 || width === 0) {
    throw new DataError(`${where}: image size must be positive, found height ${height} and width ${width}`);
  }
}

/** Rasterises each polygon [x1, y1, x2, y2, ...] separately, as pycocotools' frPoly. */
export function frPoly(polygons: readonly number[][], height: number, width: number): CompressedRle[] {
  checkImageSize(height, width, 'frPoly');
  return polygons.map((polygon, i) => {
    checkPolygon(polygon, `frPoly: polygons[${i}]`);
    return fromRle(rleFrPoly(polygon, height, width));
  });
}

/** Rasterises each box [x, y, width, height] as the polygon of its corners, as pycocotools' frBbox. */
export function frBbox(boxes: readonly number[][], height: number, width: number): CompressedRle[] {
  checkImageSize(height, width, 'frBbox');
  return boxes.map((box, i) => {
    if (!Array.isArray(box) || box.length !== 4) {
      throw new DataError(`frBbox: boxes[${i}]: expected [x, y, width, height], found ${describeValue(box)}`);
    }
    checkPolygon(box, `frBbox: boxes[${i}]`);
    return fromRle(rleFrBbox(box, height, width));
  });
}

/**
 * Compresses RLEs with uncompressed (list) counts, as pycocotools' frUncompressedRLE. Each
 * RLE keeps its own size, so height and width are not used, as in pycocotools. Compressed
 * input is accepted too and comes back re-encoded.
 */
export function frUncompressedRLE(rles: readonly CocoRle[], _height?: number, _width?: number): CompressedRle[] {
  return rles.map((rle, i) => fromRle(toRle(rle, `frUncompressedRLE: rles[${i}]`)));
}

/**
 * Converts polygons, boxes or uncompressed RLEs to compressed RLEs, choosing as pycocotools'
 * frPyObjects does. A list whose first entry has 4 numbers is a list of boxes, and one with
 * more is a list of polygons, each rasterised separately (not merged). A list of RLE objects
 * gives a list, and a single RLE object gives a single RLE.
 */
export function frPyObjects(objects: readonly number[][], height: number, width: number): CompressedRle[];
export function frPyObjects(objects: readonly CocoRle[], height: number, width: number): CompressedRle[];
export function frPyObjects(object: CocoRle, height: number, width: number): CompressedRle;
export function frPyObjects(
  objects: readonly number[][] | readonly CocoRle[] | CocoRle,
  height: number,
  width: number,
): CompressedRle | CompressedRle[] {
  if (!Array.isArray(objects)) {
    if (isRecord(objects) && 'counts' in objects && 'size' in objects) return frUncompressedRLE([objects as CocoRle])[0]!;
    throw new DataError(`frPyObjects: expected polygons, boxes or RLE objects, found ${describeValue(objects)}`);
  }
  if (objects.length === 0) return [];
  const first: unknown = objects[0];
  if (Array.isArray(first)) {
    if (first.length === 4) return frBbox(objects as number[][], height, width);
    if (first.length > 4) return frPoly(objects as number[][], height, width);
    throw new DataError(
      `frPyObjects: the first entry has ${first.length} numbers; expected a box (4) or a polygon (more than 4)`,
    );
  }
  if (isRecord(first) && 'counts' in first && 'size' in first) return frUncompressedRLE(objects as CocoRle[], height, width);
  if (typeof first === 'number') {
    throw new DataError(
      'frPyObjects: expected a list of polygons or boxes, found a flat list of numbers; ' +
        'wrap a single polygon in a list: [[x1, y1, x2, y2, ...]]',
    );
  }
  throw new DataError(`frPyObjects: expected polygons, boxes or RLE objects, found ${describeValue(first)}`);
}
