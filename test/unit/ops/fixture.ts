import { readFileSync } from 'node:fs';

/**
 * Reads a JSON fixture from test/fixtures/ops. The fixtures write NaN and infinities as the
 * strings "NaN", "Infinity" and "-Infinity" (plain JSON has no such numbers), so those strings
 * become numbers again here.
 */
export function loadOpsFixture<T = Record<string, unknown>>(name: string): T {
  const text = readFileSync(new URL(`../../fixtures/ops/${name}`, import.meta.url), 'utf8');
  return JSON.parse(text, (_key, value: unknown) => {
    if (value === 'NaN') return Number.NaN;
    if (value === 'Infinity') return Number.POSITIVE_INFINITY;
    if (value === '-Infinity') return Number.NEGATIVE_INFINITY;
    return value;
  }) as T;
}

/** Flattens a list of rows into a Float32Array (fixture inputs are exact in float32). */
export function float32Rows(rows: readonly (readonly number[])[]): Float32Array {
  return Float32Array.from(rows.flat());
}

/** Flattens a list of rows into a Float64Array. */
export function float64Rows(rows: readonly (readonly number[])[]): Float64Array {
  return Float64Array.from(rows.flat());
}

/**
 * Returns the first index where |actual - expected| > atol + rtol * |expected| (NaN must match
 * NaN), or -1 when every element is within tolerance.
 */
export function firstMismatch(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number): number {
  if (actual.length !== expected.length) return Math.min(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e) || Number.isNaN(a)) {
      if (Number.isNaN(e) !== Number.isNaN(a)) return i;
      continue;
    }
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) return i;
  }
  return -1;
}

/** Describes the element at `index` for an assertion message. */
export function describeMismatch(actual: ArrayLike<number>, expected: ArrayLike<number>, index: number): string {
  if (index < 0) return 'all within tolerance';
  if (actual.length !== expected.length) return `length ${actual.length}, expected ${expected.length}`;
  return `element ${index}: got ${actual[index]}, expected ${expected[index]}`;
}
