import type * as tf from '@tensorflow/tfjs-core';

import type { BoxArray } from '../../ops/boxes.ts';

/** A box coder maps boxes to regression targets against reference boxes and back. */
export interface BoxCoder {
  /** Encodes `gt` `[N, 4]` against `proposals` `[N, 4]` row by row, as deltas `[N, 4]`. */
  encode(proposals: BoxArray, gt: BoxArray): Float32Array;
  /** Decodes deltas `[N, 4 * K]` against `proposals` `[N, 4]`, clipping to `maxShape = [H, W]` when given. */
  decode(proposals: BoxArray, deltas: BoxArray, maxShape?: readonly [number, number] | null): Float32Array;
  encodeTensor(proposals: tf.Tensor2D, gt: tf.Tensor2D): tf.Tensor2D;
  decodeTensor(proposals: tf.Tensor2D, deltas: tf.Tensor2D, maxShape?: readonly [number, number] | null): tf.Tensor2D;
}

/** Result of assigning ground-truth boxes to candidate boxes (MMDetection's `AssignResult`). */
export interface AssignResult {
  numGts: number;
  /** Per candidate: -1 ignored, 0 negative (background), i + 1 positive for ground-truth box i. */
  gtInds: Int32Array;
  /** Per candidate: the largest IoU with any ground-truth box (-1 where an ignore region masked it). */
  maxOverlaps: Float64Array;
  /** Per candidate: the label of the assigned ground-truth box, or -1 for non-positives. Null when no labels were given. */
  labels: Int32Array | null;
}

export interface AssignInput {
  /** Candidate boxes `[N, 4]` (anchors or proposals). */
  boxes: BoxArray;
  /** Ground-truth boxes `[M, 4]`. */
  gtBoxes: BoxArray;
  /** Ground-truth labels `[M]`. When omitted, `labels` of the result is null. */
  gtLabels?: Int32Array;
  /** Regions `[M', 4]` (crowd boxes) whose candidates are ignored. */
  ignoredBoxes?: BoxArray;
}

/** Assigns each candidate box to a ground-truth box, to background, or to neither (ignored). */
export interface Assigner {
  assign(input: AssignInput): AssignResult;
}

/** Generates anchors ("priors") for every feature-map level, as MMDetection's prior generators. */
export interface PriorGenerator {
  readonly numLevels: number;
  /** Anchors per feature-map cell at each level. */
  readonly numBaseAnchors: number[];
  /** Anchors `[H * W * A, 4]` of each level for feature maps of the given `[H, W]` sizes. */
  gridAnchors(featmapSizes: ReadonlyArray<readonly [number, number]>): Float32Array[];
  /** Per-anchor flags (1 valid, 0 not) of each level for one image of padded size `padShape = [H, W]`. */
  validFlags(featmapSizes: ReadonlyArray<readonly [number, number]>, padShape: readonly [number, number]): Uint8Array[];
}
