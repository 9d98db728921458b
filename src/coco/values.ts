/** Checks and formatting of input values for error messages. */

const MAX_DESCRIPTION_LENGTH = 80;

/** Checks that a value is a number other than NaN and the infinities. */
export function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/**
 * Describes a value for an error message: numbers as JavaScript prints them (so NaN stays
 * NaN, where JSON would print null), strings quoted, arrays and objects as short JSON.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  const text = describeInner(value);
  return text.length > MAX_DESCRIPTION_LENGTH ? text.slice(0, MAX_DESCRIPTION_LENGTH - 3) + '...' : text;
}

function describeInner(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) {
    const shown = value.slice(0, 10).map(describeInner);
    if (value.length > 10) shown.push(`... (${value.length} items)`);
    return '[' + shown.join(', ') + ']';
  }
  if (value === null || typeof value !== 'object') return String(value);
  return JSON.stringify(value) ?? String(value);
}
