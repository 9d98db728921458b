/**
 * Candidate selection of dense-head post-processing, as MMDetection 2.x (>= 2.18)
 * `filter_scores_and_topk`: keep the (anchor, class) pairs whose score is strictly above a
 * threshold, then the `topK` highest of those.
 */

export interface SelectedScores {
  /** Anchor (row) index of each kept pair. */
  anchorIndices: Int32Array;
  /** Class (column) index of each kept pair. */
  labels: Int32Array;
  scores: Float32Array;
}

/**
 * Selects from a row-major `[numRows, numClasses]` score matrix the pairs with score > scoreThr
 * and keeps the `topK` highest (all of them when topK <= 0). The result is ordered by
 * decreasing score, exact ties by lower flat index. NaN scores are never selected.
 */
export function selectTopScores(scores: Float32Array, numClasses: number, scoreThr: number, topK: number): SelectedScores {
  // PyTorch compares a float32 tensor with a Python float in float32, so a score equal to
  // float32(0.05) is not above a threshold of 0.05.
  const threshold = Math.fround(scoreThr);
  let count = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i]! > threshold) count++;
  let candidates: Int32Array = new Int32Array(count);
  let c = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i]! > threshold) candidates[c++] = i;

  if (topK > 0 && count > topK) candidates = keepTopK(scores, candidates, topK);
  candidates.sort((a, b) => scores[b]! - scores[a]! || a - b);

  const anchorIndices = new Int32Array(candidates.length);
  const labels = new Int32Array(candidates.length);
  const selectedScores = new Float32Array(candidates.length);
  candidates.forEach((flat, k) => {
    anchorIndices[k] = Math.floor(flat / numClasses);
    labels[k] = flat % numClasses;
    selectedScores[k] = scores[flat]!;
  });
  return { anchorIndices, labels, scores: selectedScores };
}

/**
 * Keeps the `topK` highest-scoring candidates, unordered: every candidate above the topK-th
 * largest score, then candidates equal to it by lower index. A numeric sort of a copy of the
 * scores finds that value without sorting the candidates with a comparator.
 */
function keepTopK(scores: Float32Array, candidates: Int32Array, topK: number): Int32Array {
  const values = Float32Array.from(candidates, (i) => scores[i]!).sort();
  const kth = values[values.length - topK]!;
  const kept = new Int32Array(topK);
  let k = 0;
  for (const i of candidates) if (scores[i]! > kth) kept[k++] = i;
  for (const i of candidates) {
    if (k === topK) break;
    if (scores[i] === kth) kept[k++] = i;
  }
  return kept;
}
