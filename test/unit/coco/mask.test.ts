import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

import test from 'ava';

import {
  area,
  decode,
  encode,
  frBbox,
  frPoly,
  frPyObjects,
  iou,
  merge,
  toBbox,
  type CompressedRle,
} from '../../../src/coco/mask.ts';
import type { CocoRle } from '../../../src/coco/types.ts';

const FIXTURES = new URL('../../fixtures/coco/', import.meta.url).pathname;
const TOLERANCE = 1e-12;

interface MaskInputs {
  polygons?: number[][];
  polygon?: number[];
  boxes?: number[][];
  uncompressed?: CocoRle[];
  compressed?: CompressedRle[];
  masks?: number[][][];
}

type Case = MaskInputs & { name: string; h: number; w: number; gt?: MaskInputs; iscrowd?: number[] };

interface Reference {
  name: string;
  error?: string;
  rles: CompressedRle[];
  area: number[];
  toBbox: number[][];
  merged: CompressedRle;
  merged_area: number;
  merged_toBbox: number[];
  merged_intersect: CompressedRle;
  merged_intersect_area: number;
  gt_rles?: CompressedRle[];
  gt_area?: number[];
  iscrowd: number[];
  iou: number[][];
  bbox_iou?: number[][];
  decoded?: number[][][];
}

function readGzipJson<T>(name: string): T {
  return JSON.parse(gunzipSync(readFileSync(FIXTURES + name)).toString('utf8')) as T;
}

const cases = readGzipJson<Case[]>('dev_rle_cases.json.gz');
const references = readGzipJson<Reference[]>('dev_rle_cases_ref.json.gz');

/** Converts the inputs to RLEs the way the reference script did. */
function toRles(inputs: MaskInputs, h: number, w: number): CompressedRle[] {
  if (inputs.polygons !== undefined) return frPyObjects(inputs.polygons, h, w);
  if (inputs.boxes !== undefined) return frPyObjects(inputs.boxes, h, w);
  if (inputs.uncompressed !== undefined) return frPyObjects(inputs.uncompressed, h, w);
  if (inputs.compressed !== undefined) return inputs.compressed;
  if (inputs.masks !== undefined) {
    return inputs.masks.map((rows) => encode({ height: h, width: w, data: Uint8Array.from(rows.flat()) }));
  }
  throw new Error('case without inputs');
}

function assertMatrixClose(t: import('ava').ExecutionContext, actual: number[][], expected: number[][], label: string): void {
  t.is(actual.length, expected.length, `${label}: rows`);
  expected.forEach((row, d) => {
    t.is(actual[d]!.length, row.length, `${label}: columns of row ${d}`);
    row.forEach((value, g) => {
      const found = actual[d]![g]!;
      if (!(Math.abs(found - value) < TOLERANCE)) t.fail(`${label}[${d}][${g}]: ${found} != ${value}`);
    });
  });
}

test('RLE fixture has all cases', (t) => {
  t.is(cases.length, 103);
  t.deepEqual(
    cases.map((c) => c.name),
    references.map((r) => r.name),
  );
});

for (let index = 0; index < cases.length; index++) {
  const input = cases[index]!;
  const reference = references[index]!;
  if (reference.error !== undefined) continue;

  test(`RLE case ${input.name} equals pycocotools`, (t) => {
    const { h, w } = input;
    const rles = toRles(input, h, w);
    t.deepEqual(rles, reference.rles, 'RLE strings');
    t.deepEqual(area(rles), reference.area, 'areas');
    t.deepEqual(toBbox(rles), reference.toBbox, 'boxes');

    const merged = merge(rles);
    t.deepEqual(merged, reference.merged, 'union');
    t.is(area(merged), reference.merged_area);
    t.deepEqual(toBbox(merged), reference.merged_toBbox);
    const intersection = merge(rles, true);
    t.deepEqual(intersection, reference.merged_intersect, 'intersection');
    t.is(area(intersection), reference.merged_intersect_area);

    let gtRles = rles;
    if (input.gt !== undefined) {
      gtRles = toRles(input.gt, h, w);
      t.deepEqual(gtRles, reference.gt_rles, 'ground-truth RLE strings');
      t.deepEqual(area(gtRles), reference.gt_area);
    }
    assertMatrixClose(t, iou(rles, gtRles, reference.iscrowd), reference.iou, 'mask IoU');
    if (reference.bbox_iou !== undefined) {
      const gtBoxes = input.gt?.boxes ?? input.boxes!;
      assertMatrixClose(t, iou(input.boxes!, gtBoxes, reference.iscrowd), reference.bbox_iou, 'box IoU');
    }
    if (reference.decoded !== undefined) {
      const decoded = rles.map((rle) => {
        const mask = decode(rle);
        return Array.from({ length: mask.height }, (_, y) => Array.from(mask.data.subarray(y * mask.width, (y + 1) * mask.width)));
      });
      t.deepEqual(decoded, reference.decoded, 'decoded masks');
    }
  });
}

test('flat polygon list is rejected', (t) => {
  const input = cases.find((c) => c.name === 'square_int_single_polygon_form')!;
  t.throws(() => frPyObjects(input.polygon as unknown as number[][], input.h, input.w), {
    message:
      'frPyObjects: expected a list of polygons or boxes, found a flat list of numbers; ' +
      'wrap a single polygon in a list: [[x1, y1, x2, y2, ...]]',
  });
});

test('four-number first entry is read as a box', (t) => {
  // pycocotools picks frBbox here too, but then fails on the Python list it was given.
  const input = cases.find((c) => c.name === 'poly_two_points_treated_as_box')!;
  t.deepEqual(frPyObjects(input.polygons!, input.h, input.w), frBbox(input.polygons!, input.h, input.w));
  t.deepEqual(toBbox(frPyObjects(input.polygons!, input.h, input.w)), [[1, 1, 5, 5]]);
});

test('polygon with odd coordinate count is rejected', (t) => {
  t.throws(() => frPoly([[1, 1, 8, 1, 8, 8, 1]], 10, 10), {
    message: 'frPoly: polygons[0]: a polygon needs an even number of coordinates (x, y pairs), found 7',
  });
});

test('polygon with NaN coordinate is rejected', (t) => {
  t.throws(() => frPoly([[1, 1, 8, NaN, 8, 8]], 10, 10), {
    message: 'frPoly: polygons[0][3]: expected a finite coordinate, found NaN',
  });
});

test('counts not adding up to size are rejected', (t) => {
  t.throws(() => decode({ size: [4, 5], counts: [3, 5, 10] }), {
    message: 'decode.counts: RLE counts add up to 18 pixels, but size [4, 5] has 20',
  });
  // "71<" is [7, 1, 12] (20 pixels); "71;" decodes to [7, 1, 11].
  t.is(area({ size: [4, 5], counts: '71<' }), 1);
  t.throws(() => area({ size: [4, 5], counts: '71;' }), {
    message: 'area.counts: RLE counts add up to 19 pixels, but size [4, 5] has 20',
  });
});

test('truncated RLE string is rejected', (t) => {
  // 'f9:d0...' is the square of case square_int; cutting it after a continuation character
  // leaves a count without its last character.
  const valid = 'f9:d000000000000000000R9';
  t.is(area({ size: [30, 30], counts: valid }), 100);
  t.throws(() => area({ size: [30, 30], counts: 'f9:d' }), {
    message: 'area.counts: compressed RLE counts are truncated: the string ends inside the count that starts at offset 3',
  });
  // 'f9' ':' 'd0' is [310, 10, 20]; each further '0' repeats the count two places back.
  t.throws(() => area({ size: [30, 30], counts: valid.slice(0, 10) }), {
    message: 'area.counts: RLE counts add up to 410 pixels, but size [30, 30] has 900',
  });
});

test('garbage RLE strings are rejected', (t) => {
  t.throws(() => area({ size: [30, 30], counts: 'f9 :d' }), {
    message: `area.counts: compressed RLE counts: character " " at offset 2 is not in the range '0' to 'o'`,
  });
  t.throws(() => area({ size: [30, 30], counts: 'p' }), {
    message: `area.counts: compressed RLE counts: character "p" at offset 0 is not in the range '0' to 'o'`,
  });
  // Eight continuation characters: a count that never ends within 7 characters.
  t.throws(() => area({ size: [30, 30], counts: 'oooooooo0' }), {
    message: 'area.counts: compressed RLE counts: the count at offset 0 is longer than 7 characters',
  });
  // '0' '0' '0' 'O' is [0, 0, 0, -1 + 0]: the fourth count becomes negative.
  t.throws(() => area({ size: [30, 30], counts: '000O' }), {
    message: 'area.counts: compressed RLE counts: count 3 decodes to -1, outside 0 to 2^32 - 1',
  });
  t.throws(() => decode({ size: [30, 30], counts: '' }), {
    message: 'decode.counts: RLE counts add up to 0 pixels, but size [30, 30] has 900',
  });
});

test('random garbage never hangs or crashes', (t) => {
  let state = 12345;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
  let rejected = 0;
  let accepted = 0;
  for (let n = 0; n < 2000; n++) {
    const length = Math.floor(next() * 40);
    const text = Array.from({ length }, () => String.fromCharCode(32 + Math.floor(next() * 95))).join('');
    try {
      const mask = decode({ size: [7, 9], counts: text });
      t.is(mask.data.length, 63);
      accepted++;
    } catch (error) {
      t.is((error as Error).name, 'DataError');
      rejected++;
    }
  }
  t.is(accepted + rejected, 2000);
  t.true(rejected > 1900);
});

test('RLE strings survive large counts', (t) => {
  // A 20000 x 20000 mask with one foreground pixel needs counts beyond 2^27 (6 characters).
  const height = 20000;
  const width = 20000;
  const counts = [height * width - 7, 1, 6];
  const [compressed] = frPyObjects([{ size: [height, width], counts }], height, width);
  t.deepEqual(toBbox(compressed!), [width - 1, height - 7, 1, 1]);
  t.is(area(compressed!), 1);
  t.deepEqual(decode(compressed!).data.reduce((sum, value) => sum + value, 0), 1);
});

test('merge of different sizes is rejected', (t) => {
  t.throws(() => merge([{ size: [4, 5], counts: [20] }, { size: [5, 4], counts: [20] }]), {
    message: 'merge: cannot merge masks of different sizes: [4, 5] and [5, 4]',
  });
});

test('mask IoU of different sizes is -1', (t) => {
  const ious = iou([{ size: [4, 5], counts: [0, 20] }], [{ size: [5, 4], counts: [0, 20] }], [0]);
  t.deepEqual(ious, [[-1]]);
});

test('encode reads row-major masks', (t) => {
  // 2 x 3 mask with pixels (x=1, y=0) and (x=2, y=1) set; column-major runs: 2 zeros, 1 one, 2 zeros, 1 one.
  const rle = encode({ height: 2, width: 3, data: Uint8Array.from([0, 1, 0, 0, 0, 1]) });
  t.deepEqual(frPyObjects({ size: [2, 3], counts: [2, 1, 2, 1] }, 2, 3), rle);
  t.deepEqual(toBbox(rle), [1, 0, 2, 2]);
});

/** maskApi.c's rleFrPoly step by step, with all points stored first, to check the traced version against. */
function literalFrPoly(xy: number[], h: number, w: number): number[] {
  const k = xy.length / 2;
  const x: number[] = [];
  const y: number[] = [];
  for (let j = 0; j < k; j++) x.push(Math.trunc(5 * xy[2 * j]! + 0.5));
  for (let j = 0; j < k; j++) y.push(Math.trunc(5 * xy[2 * j + 1]! + 0.5));
  x.push(x[0]!);
  y.push(y[0]!);

  const u: number[] = [];
  const v: number[] = [];
  for (let j = 0; j < k; j++) {
    let xs = x[j]!;
    let xe = x[j + 1]!;
    let ys = y[j]!;
    let ye = y[j + 1]!;
    const dx = Math.abs(xe - xs);
    const dy = Math.abs(ys - ye);
    const flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
    if (flip) [xs, xe, ys, ye] = [xe, xs, ye, ys];
    const s = dx >= dy ? (ye - ys) / dx : (xe - xs) / dy;
    if (dx >= dy) {
      for (let d = 0; d <= dx; d++) {
        const t = flip ? dx - d : d;
        u.push(t + xs);
        v.push(dx === 0 ? -2147483648 : Math.trunc(ys + s * t + 0.5));
      }
    } else {
      for (let d = 0; d <= dy; d++) {
        const t = flip ? dy - d : d;
        v.push(t + ys);
        u.push(Math.trunc(xs + s * t + 0.5));
      }
    }
  }

  const a: number[] = [];
  for (let j = 1; j < u.length; j++) {
    if (u[j] === u[j - 1]) continue;
    let xd = u[j]! < u[j - 1]! ? u[j]! : u[j]! - 1;
    xd = (xd + 0.5) / 5 - 0.5;
    if (Math.floor(xd) !== xd || xd < 0 || xd > w - 1) continue;
    let yd = v[j]! < v[j - 1]! ? v[j]! : v[j - 1]!;
    yd = (yd + 0.5) / 5 - 0.5;
    if (yd < 0) yd = 0;
    else if (yd > h) yd = h;
    a.push(xd * h + Math.ceil(yd));
  }
  a.push(h * w);

  a.sort((p, q) => p - q);
  let previous = 0;
  for (let j = 0; j < a.length; j++) {
    const value = a[j]!;
    a[j] = value - previous;
    previous = value;
  }
  const b = [a[0]!];
  let j = 1;
  while (j < a.length) {
    if (a[j]! > 0) b.push(a[j++]!);
    else {
      j++;
      if (j < a.length) b[b.length - 1] += a[j++]!;
    }
  }
  return b;
}

test('traced polygons equal step-by-step rleFrPoly', (t) => {
  let state = 99991;
  const next = () => {
    state = (state * 48271) % 2147483647;
    return state / 2147483647;
  };
  let checked = 0;
  for (let n = 0; n < 3000; n++) {
    const h = 1 + Math.floor(next() * 60);
    const w = 1 + Math.floor(next() * 60);
    const numPoints = 1 + Math.floor(next() * 9);
    const polygon: number[] = [];
    for (let p = 0; p < numPoints; p++) {
      // Coordinates beyond the image, on the 0.2 grid, and repeated points all occur.
      const snap = next() < 0.3 ? (value: number) => Math.round(value * 5) / 5 : (value: number) => Math.round(value * 100) / 100;
      polygon.push(snap(next() * (w + 20) - 10), snap(next() * (h + 20) - 10));
      if (next() < 0.1) polygon.push(polygon.at(-2)!, polygon.at(-1)!);
    }
    // Compressing the literal counts keeps them as they are, so equal strings mean equal counts.
    const expected = frPyObjects({ size: [h, w], counts: literalFrPoly(polygon, h, w) }, h, w);
    const actual = frPoly([polygon], h, w)[0]!;
    if (actual.counts !== expected.counts) {
      t.fail(`polygon ${JSON.stringify(polygon)} on ${h} x ${w}: ${actual.counts} != ${expected.counts}`);
      return;
    }
    checked++;
  }
  t.is(checked, 3000);
});
