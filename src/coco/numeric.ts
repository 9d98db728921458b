/**
 * Numeric helpers that reproduce numpy and Python to the last bit, so that the evaluator's
 * numbers and printed text equal pycocotools' output.
 */

/**
 * Returns `num` evenly spaced values from `start` to `stop` inclusive, computed as numpy's
 * `linspace(start, stop, num, endpoint=True)` does: `i * step + start`, with the last value
 * set to `stop`. The thresholds 0.5:0.05:0.95 then contain 0.8999999999999999, as in numpy.
 */
export function linspace(start: number, stop: number, num: number): number[] {
  if (!Number.isInteger(num) || num < 0) {
    throw new RangeError(`linspace: num must be a non-negative integer, found ${num}`);
  }
  const values = new Array<number>(num);
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) values[i] = num > 1 ? i * step + start : start;
  if (num > 1) values[num - 1] = stop;
  return values;
}

const PAIRWISE_BLOCK_SIZE = 128;

/**
 * Sums `values[start, start + count)` in the order numpy's pairwise summation uses for a
 * contiguous float64 array (`np.sum`, `np.mean`): blocks of at most 128 values summed with
 * eight interleaved accumulators, halves of larger ranges summed recursively.
 */
export function pairwiseSum(values: ArrayLike<number>, start = 0, count = values.length - start): number {
  if (count < 8) {
    let sum = 0;
    for (let i = 0; i < count; i++) sum += values[start + i]!;
    return sum;
  }
  if (count <= PAIRWISE_BLOCK_SIZE) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = values[start + j]!;
    let i = 8;
    for (; i < count - (count % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j]! += values[start + i + j]!;
    }
    let sum = ((r[0]! + r[1]!) + (r[2]! + r[3]!)) + ((r[4]! + r[5]!) + (r[6]! + r[7]!));
    for (; i < count; i++) sum += values[start + i]!;
    return sum;
  }
  let half = Math.floor(count / 2);
  half -= half % 8;
  return pairwiseSum(values, start, half) + pairwiseSum(values, start + half, count - half);
}

/** numpy 1.x's ufunc buffer size: its reductions hand the summation loop at most this many values at a time. */
const NUMPY_BUFFER_SIZE = 8192;

/**
 * Sums the values as numpy 1.24 (the version pycocotools' reference numbers were made with)
 * sums a 1-D float64 array: pairwise within blocks of 8192 values, blocks added in order.
 * numpy 2.4 sums the whole array pairwise instead, and the two can differ in the last bit.
 */
export function numpySum(values: ArrayLike<number>): number {
  let sum = 0;
  for (let start = 0; start < values.length; start += NUMPY_BUFFER_SIZE) {
    sum += pairwiseSum(values, start, Math.min(NUMPY_BUFFER_SIZE, values.length - start));
  }
  return sum;
}

/** Returns the mean as numpy 1.24's `np.mean` computes it, or NaN for no values. */
export function numpyMean(values: ArrayLike<number>): number {
  return numpySum(values) / values.length;
}

/**
 * Formats `value` with `digits` decimals as Python's `'{:.Nf}'.format(value)` does.
 * JavaScript's toFixed rounds an exact tie (0.0625 to 3 decimals) away from zero, but Python
 * rounds it to the even digit ('0.062'), so ties are rounded here by hand.
 */
export function formatFixed(value: number, digits: number): string {
  if (Number.isNaN(value)) return 'nan';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';

  const sign = value < 0 || Object.is(value, -0) ? '-' : '';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e21) {
    // toFixed switches to exponent notation here, but BigInt prints the exact integer.
    return sign + BigInt(magnitude).toString() + (digits > 0 ? '.' + '0'.repeat(digits) : '');
  }

  // toFixed(100) prints the exact binary value for every double that can be a tie at `digits`
  // decimals: a tie has at most digits + 1 decimals.
  const exact = magnitude.toFixed(100);
  const point = exact.indexOf('.');
  const tail = exact.slice(point + 1 + digits);
  const isTie = tail[0] === '5' && /^50*$/.test(tail);
  if (!isTie) return sign + magnitude.toFixed(digits);

  const truncated = exact.slice(0, digits > 0 ? point + 1 + digits : point);
  const lastDigit = Number(truncated[truncated.length - 1]);
  const rounded = lastDigit % 2 === 0 ? truncated : incrementDecimalString(truncated);
  return sign + rounded;
}

/** Adds one unit in the last place to a non-negative decimal string such as "0.063" or "9.99". */
function incrementDecimalString(text: string): string {
  const chars = text.split('');
  for (let i = chars.length - 1; i >= 0; i--) {
    if (chars[i] === '.') continue;
    if (chars[i] !== '9') {
      chars[i] = String(Number(chars[i]) + 1);
      return chars.join('');
    }
    chars[i] = '0';
  }
  return '1' + chars.join('');
}
