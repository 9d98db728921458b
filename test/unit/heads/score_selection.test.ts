import test from 'ava';

import { selectTopScores } from '../../../src/models/dense_heads/score_selection.ts';

// 3 anchors x 2 classes, row-major: flat index = anchor * 2 + class.
const SCORES = Float32Array.of(0.5, 0.05, 0.25, 0.75, 0.5, Number.NaN);

test('threshold is strict and NaN skipped', (t) => {
  // Index 1 holds float32(0.05), which equals the threshold in float32 and so is left out.
  const selected = selectTopScores(SCORES, 2, 0.05, 0);
  t.deepEqual([...selected.scores], [0.75, 0.5, 0.5, 0.25]);
  t.deepEqual([...selected.anchorIndices], [1, 0, 2, 1]);
  t.deepEqual([...selected.labels], [1, 0, 0, 0]);
});

test('topK keeps lower index on ties', (t) => {
  // 0.5 appears at flat indices 0 and 4; with room for two only index 0 joins 0.75.
  const selected = selectTopScores(SCORES, 2, 0.05, 2);
  t.deepEqual([...selected.scores], [0.75, 0.5]);
  t.deepEqual([...selected.anchorIndices], [1, 0]);
  const three = selectTopScores(SCORES, 2, 0.05, 3);
  t.deepEqual([...three.anchorIndices], [1, 0, 2]);
});

test('topK larger than candidates', (t) => {
  t.is(selectTopScores(SCORES, 2, 0.05, 100).scores.length, 4);
});

test('nothing above threshold', (t) => {
  const selected = selectTopScores(SCORES, 2, 0.9, 10);
  t.is(selected.scores.length, 0);
  t.is(selectTopScores(new Float32Array(0), 2, 0, 10).labels.length, 0);
});
