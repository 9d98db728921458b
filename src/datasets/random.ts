/**
 * Seeded random numbers for data loading. Shuffling and random augmentation draw from
 * generators derived from (seed, epoch, position), so a run that resumes in the middle of
 * an epoch gets the same order and the same flips as the uninterrupted run.
 */

/** A function that returns uniform floats in [0, 1). */
export type RandomSource = () => number;

/** Mixes 32-bit words into one seed with the MurmurHash3 finaliser, so nearby inputs give unrelated seeds. */
export function mixSeed(...words: number[]): number {
  let hash = 0x9e3779b9;
  for (const word of words) {
    hash = Math.imul(hash ^ (word >>> 0), 0x85ebca6b);
    hash ^= hash >>> 13;
    hash = Math.imul(hash, 0xc2b2ae35);
    hash ^= hash >>> 16;
  }
  return hash >>> 0;
}

/** Creates a mulberry32 generator: fast, 32-bit state, good enough for shuffling and coin flips. */
export function createRandom(seed: number): RandomSource {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

/** Returns a uniform integer in [low, high] (both inclusive). */
export function randomInt(random: RandomSource, low: number, high: number): number {
  return low + Math.floor(random() * (high - low + 1));
}

/** Returns `0..count-1` in an order fixed by `random` (Fisher-Yates shuffle). */
export function shuffledIndices(count: number, random: RandomSource): number[] {
  const indices = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const swap = indices[i]!;
    indices[i] = indices[j]!;
    indices[j] = swap;
  }
  return indices;
}
