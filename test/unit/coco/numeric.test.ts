import test from 'ava';

import { Params, formatFixed, linspace, numpySum, pairwiseSum } from '../../../src/coco/index.ts';

test('default IoU thresholds match numpy linspace', (t) => {
  const params = new Params('bbox');
  // numpy computes i * step + start, so the ninth threshold is not 0.9.
  t.deepEqual(params.iouThrs, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95]);
  t.is(params.recThrs.length, 101);
  t.is(params.recThrs[50], 0.5);
  t.is(params.recThrs[100], 1);
  t.deepEqual(params.areaRng, [
    [0, 1e10],
    [0, 1024],
    [1024, 9216],
    [9216, 1e10],
  ]);
  t.deepEqual(params.maxDets, [1, 10, 100]);
});

test('linspace handles one and zero points', (t) => {
  t.deepEqual(linspace(0.5, 0.95, 1), [0.5]);
  t.deepEqual(linspace(0, 1, 0), []);
  t.throws(() => linspace(0, 1, 2.5), { message: 'linspace: num must be a non-negative integer, found 2.5' });
});

test('pairwiseSum uses eight accumulators', (t) => {
  // 1 plus eight halves of an ulp (h). Added one by one, every half is lost to round-half-even.
  // numpy adds pairs first: ((1 + h) + (h + h)) + ((h + h) + (h + h)), then the last h.
  const half = 2 ** -53;
  const values = [1, half, half, half, half, half, half, half, half];
  let sequential = 0;
  for (const value of values) sequential += value;
  t.is(sequential, 1);
  t.is(pairwiseSum(values), 1 + 2 ** -50);
});

test('numpySum adds 8192-value blocks in order', (t) => {
  // 1 at index 0, half an ulp at 4096 and at 8192. Block 1 gives 1 + half = 1 (tie to even),
  // then 1 + half = 1 again. Pure pairwise halves at 4096 and keeps both halves: 1 + 2^-52.
  const values = new Float64Array(8193);
  values[0] = 1;
  values[4096] = 2 ** -53;
  values[8192] = 2 ** -53;
  t.is(numpySum(values), 1);
  t.is(pairwiseSum(values), 1 + 2 ** -52);
});

test('formatFixed rounds ties to even like Python', (t) => {
  const cases: Array<[number, number, string]> = [
    [0.0625, 3, '0.062'],
    [0.1875, 3, '0.188'],
    [0.5625, 3, '0.562'],
    [0.9375, 3, '0.938'],
    [-0.0625, 3, '-0.062'],
    [2.5, 0, '2'],
    [9.5, 0, '10'],
    [0.375, 2, '0.38'],
  ];
  for (const [value, digits, expected] of cases) t.is(formatFixed(value, digits), expected, `${value} to ${digits}`);
});

test('formatFixed matches Python on non-ties', (t) => {
  const cases: Array<[number, number, string]> = [
    [-1, 3, '-1.000'],
    [0.0005, 3, '0.001'],
    [2.675, 2, '2.67'],
    [0.36415783845748356, 3, '0.364'],
    [99.9995, 3, '99.999'],
    [-0, 3, '-0.000'],
    [0.95, 2, '0.95'],
    [NaN, 3, 'nan'],
  ];
  for (const [value, digits, expected] of cases) t.is(formatFixed(value, digits), expected, `${value} to ${digits}`);
});
