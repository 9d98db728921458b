import * as tf from '@tensorflow/tfjs-core';

import type { AnchorGeneratorConfig, AssignerConfig, BoxCoderConfig, LossConfig } from '../../config/component_types.ts';
import { checkOptionKeys } from '../../config/config.ts';
import { Module } from '../../nn/module.ts';
import { flipBoxesHorizontal } from '../../ops/boxes.ts';
import { batchedNms } from '../../ops/nms.ts';
import { ANCHOR_GENERATORS, ASSIGNERS, BOX_CODERS, LOSSES } from '../../registry/index.ts';
import { ConfigError, DataError } from '../../utils/errors.ts';
import type { ClassificationLoss, Loss } from '../losses/utils.ts';
import type { AssignInput, Assigner, BoxCoder, PriorGenerator } from '../task_modules/types.ts';
import type { DenseHead, Detections, GroundTruth, ImageMeta, LossDict } from '../types.ts';
import { selectTopScores } from './score_selection.ts';

/**
 * Base of anchor-based dense heads (RetinaNet, RPN), after MMDetection 2.x `AnchorHead`.
 * Subclasses build the layers and `forward`. This class computes training targets in JS
 * (anchors, assigner, box coder), the losses, and the post-processing of `predict`.
 */

export interface AnchorHeadTrainConfig {
  assigner: AssignerConfig;
  /** Anchors reaching more than this many pixels outside the image are ignored. A value < 0 (default -1) keeps every valid anchor. */
  allowedBorder?: number;
  /** Classification weight of positives (a value <= 0 means 1). */
  posWeight?: number;
}

export interface NmsConfig {
  type?: 'nms';
  iouThreshold: number;
}

export interface AnchorHeadTestConfig {
  /** Candidates kept per level before NMS (all when <= 0). */
  nmsPre?: number;
  /**
   * Boxes whose width or height is not above this, in resized-image pixels, are dropped (as
   * MMDetection's RPN does). The default 0 keeps all, as MMDetection's RetinaNet does.
   */
  minBboxSize?: number;
  /** Candidates need a score strictly above this. */
  scoreThr?: number;
  nms?: NmsConfig;
  /** Detections kept per image after NMS. */
  maxPerImg?: number;
}

export interface AnchorHeadOptions {
  numClasses: number;
  inChannels: number;
  featChannels?: number;
  anchorGenerator?: AnchorGeneratorConfig;
  bboxCoder?: BoxCoderConfig;
  lossCls?: LossConfig;
  lossBbox?: LossConfig;
  trainCfg?: AnchorHeadTrainConfig;
  testCfg?: AnchorHeadTestConfig;
}

/** Defaults a subclass supplies for the options it leaves out, as MMDetection's head signatures do. */
export interface AnchorHeadDefaults {
  featChannels: number;
  anchorGenerator: AnchorGeneratorConfig;
  bboxCoder: BoxCoderConfig;
  lossCls: LossConfig;
  lossBbox: LossConfig;
  trainCfg: Required<AnchorHeadTrainConfig>;
  testCfg: Required<AnchorHeadTestConfig>;
}

/** Raw head outputs per level: class logits `[N, H, W, A * C]` and box deltas `[N, H, W, A * 4]`. */
export interface AnchorHeadOutputs {
  clsScores: tf.Tensor4D[];
  bboxPreds: tf.Tensor4D[];
}

/**
 * Training targets of a batch, flattened over images, levels, cells and anchors (the order of
 * the flattened head outputs).
 */
export interface AnchorTargets {
  /** `[N * numAnchors]` class labels, `numClasses` for background and ignored anchors. */
  labels: Int32Array;
  /** `[N * numAnchors]` classification weights: 0 for ignored anchors. */
  labelWeights: Float32Array;
  /** `[N * numAnchors, 4]` encoded box targets, 0 except at positives. */
  bboxTargets: Float32Array;
  /** `[N * numAnchors, 4]` regression weights: 1 at positives, else 0. */
  bboxWeights: Float32Array;
  /** Sum over images of max(positives, 1), MMDetection's normaliser. */
  numTotalPos: number;
  /** Sum over images of max(negatives, 1). */
  numTotalNeg: number;
}

export const ANCHOR_HEAD_OPTION_KEYS = [
  'numClasses',
  'inChannels',
  'featChannels',
  'anchorGenerator',
  'bboxCoder',
  'lossCls',
  'lossBbox',
  'trainCfg',
  'testCfg',
] as const;

export abstract class AnchorHead extends Module implements DenseHead {
  readonly numClasses: number;
  readonly inChannels: number;
  readonly featChannels: number;
  readonly anchorGenerator: PriorGenerator;
  readonly bboxCoder: BoxCoder;
  readonly lossCls: ClassificationLoss;
  readonly lossBbox: Loss;
  readonly assigner: Assigner;
  readonly trainCfg: Required<AnchorHeadTrainConfig>;
  readonly testCfg: Required<AnchorHeadTestConfig>;
  /** Sigmoid class scores (K channels per anchor) or a softmax with a background column (K + 1). */
  readonly useSigmoidCls: boolean;
  readonly clsOutChannels: number;
  /** Anchors per feature-map cell, the same at every level. */
  readonly numBaseAnchors: number;
  /**
   * Whether training samples a subset of the anchors. Without sampling (focal loss) every
   * non-ignored anchor counts and the losses are divided by the number of positives, with
   * sampling by positives plus negatives.
   */
  protected readonly sampling: boolean = false;

  constructor(options: AnchorHeadOptions, defaults: AnchorHeadDefaults, path: string) {
    super();
    this.numClasses = options.numClasses;
    if (!(Number.isInteger(this.numClasses) && this.numClasses > 0)) {
      throw new ConfigError(`${path}: 'numClasses' must be a positive integer, got ${JSON.stringify(options.numClasses)}`);
    }
    this.inChannels = requirePositiveInteger(path, 'inChannels', options.inChannels);
    this.featChannels = requirePositiveInteger(path, 'featChannels', options.featChannels ?? defaults.featChannels);

    this.anchorGenerator = ANCHOR_GENERATORS.build(options.anchorGenerator ?? defaults.anchorGenerator, `${path}.anchorGenerator`);
    this.bboxCoder = BOX_CODERS.build(options.bboxCoder ?? defaults.bboxCoder, `${path}.bboxCoder`);
    this.lossCls = LOSSES.build(options.lossCls ?? defaults.lossCls, `${path}.lossCls`) as ClassificationLoss;
    this.lossBbox = LOSSES.build(options.lossBbox ?? defaults.lossBbox, `${path}.lossBbox`) as Loss;
    this.useSigmoidCls = this.lossCls.useSigmoid === true;
    this.clsOutChannels = this.useSigmoidCls ? this.numClasses : this.numClasses + 1;

    const counts = this.anchorGenerator.numBaseAnchors;
    if (counts.some((count) => count !== counts[0])) {
      throw new ConfigError(`${path}.anchorGenerator: every level needs the same number of anchors per cell for a shared head, got ${counts.join(', ')}`);
    }
    this.numBaseAnchors = counts[0]!;

    this.trainCfg = resolveTrainConfig(options.trainCfg, defaults.trainCfg, `${path}.trainCfg`);
    this.assigner = ASSIGNERS.build(this.trainCfg.assigner, `${path}.trainCfg.assigner`);
    this.testCfg = resolveTestConfig(options.testCfg, defaults.testCfg, `${path}.testCfg`);
  }

  /** Runs the head on pyramid features `[N, H_l, W_l, inChannels]`, finest level first. */
  abstract forward(features: tf.Tensor4D[]): AnchorHeadOutputs;

  /** Returns the label of a positive anchor matched to a box of class `gtLabel`. RPN overrides it to return 0 (foreground). */
  protected positiveLabel(gtLabel: number): number {
    return gtLabel;
  }

  /**
   * Computes the training targets of a batch in JS: for each image, the anchors within its
   * `padShape` (and within `allowedBorder` of its `imageShape`) are assigned to its boxes.
   * Positives get their box's label and encoded box, negatives the background label, and
   * ignored anchors weight 0.
   */
  getTargets(featmapSizes: ReadonlyArray<readonly [number, number]>, metas: readonly ImageMeta[], targets: readonly GroundTruth[]): AnchorTargets {
    const anchors = concatLevels(this.anchorGenerator.gridAnchors(featmapSizes));
    const numAnchors = anchors.length / 4;
    const n = metas.length;
    const labels = new Int32Array(n * numAnchors).fill(this.numClasses);
    const labelWeights = new Float32Array(n * numAnchors);
    const bboxTargets = new Float32Array(n * numAnchors * 4);
    const bboxWeights = new Float32Array(n * numAnchors * 4);
    const positiveWeight = this.trainCfg.posWeight > 0 ? this.trainCfg.posWeight : 1;
    let numTotalPos = 0;
    let numTotalNeg = 0;

    for (let image = 0; image < n; image++) {
      const meta = metas[image]!;
      const target = targets[image]!;
      const inside = this.insideAnchorIndices(anchors, featmapSizes, meta);
      const insideAnchors = new Float32Array(inside.length * 4);
      inside.forEach((anchor, k) => insideAnchors.set(anchors.subarray(4 * anchor, 4 * anchor + 4), 4 * k));

      const assignInput: AssignInput = { boxes: insideAnchors, gtBoxes: target.boxes, gtLabels: target.labels };
      if (target.ignoredBoxes !== undefined) assignInput.ignoredBoxes = target.ignoredBoxes;
      const { gtInds } = this.assigner.assign(assignInput);

      // Every non-ignored anchor is a sample (MMDetection's PseudoSampler).
      // TODO: samplers (RPN's RandomSampler) are not supported yet, although `sampling` sets the normaliser.
      const positives: number[] = [];
      let negatives = 0;
      const offset = image * numAnchors;
      gtInds.forEach((assigned, k) => {
        const flat = offset + inside[k]!;
        if (assigned > 0) {
          positives.push(k);
          labels[flat] = this.positiveLabel(target.labels[assigned - 1]!);
          labelWeights[flat] = positiveWeight;
          bboxWeights.fill(1, 4 * flat, 4 * flat + 4);
        } else if (assigned === 0) {
          negatives += 1;
          labelWeights[flat] = 1;
        }
      });

      const positiveAnchors = new Float32Array(positives.length * 4);
      const positiveGt = new Float32Array(positives.length * 4);
      positives.forEach((k, p) => {
        const gtIndex = gtInds[k]! - 1;
        positiveAnchors.set(insideAnchors.subarray(4 * k, 4 * k + 4), 4 * p);
        positiveGt.set(target.boxes.subarray(4 * gtIndex, 4 * gtIndex + 4), 4 * p);
      });
      const encoded = this.bboxCoder.encode(positiveAnchors, positiveGt);
      positives.forEach((k, p) => bboxTargets.set(encoded.subarray(4 * p, 4 * p + 4), 4 * (offset + inside[k]!)));

      numTotalPos += Math.max(positives.length, 1);
      numTotalNeg += Math.max(negatives, 1);
    }
    return { labels, labelWeights, bboxTargets, bboxWeights, numTotalPos, numTotalNeg };
  }

  /**
   * Indices (into the concatenated anchors) of the anchors whose cell lies within the image's
   * padded area and, with allowedBorder >= 0, that reach at most allowedBorder pixels outside
   * its `imageShape` (MMDetection's `anchor_inside_flags`).
   */
  private insideAnchorIndices(anchors: Float32Array, featmapSizes: ReadonlyArray<readonly [number, number]>, meta: ImageMeta): Int32Array {
    const flags = concatLevels(this.anchorGenerator.validFlags(featmapSizes, meta.padShape));
    const border = this.trainCfg.allowedBorder;
    const [height, width] = meta.imageShape;
    const inside: number[] = [];
    for (let i = 0; i < flags.length; i++) {
      if (flags[i] !== 1) continue;
      if (border >= 0) {
        const o = 4 * i;
        const within = anchors[o]! >= -border && anchors[o + 1]! >= -border && anchors[o + 2]! < width + border && anchors[o + 3]! < height + border;
        if (!within) continue;
      }
      inside.push(i);
    }
    return Int32Array.from(inside);
  }

  /**
   * Computes `loss_cls` (over every non-ignored anchor) and `loss_bbox` (over the positives),
   * both divided by the number of positives in the batch, counting at least one per image
   * (MMDetection 2.x `AnchorHead.loss`). Ground truth is in resized-image coordinates.
   */
  loss(features: tf.Tensor4D[], metas: ImageMeta[], targets: GroundTruth[]): LossDict {
    const batchSize = this.checkBatch(features, metas);
    if (targets.length !== batchSize) throw new RangeError(`${this.constructor.name}.loss: ${targets.length} targets for a batch of ${batchSize} images`);
    targets.forEach((target, i) => checkGroundTruth(target, i, this.numClasses));

    return tf.tidy(() => {
      const { clsScores, bboxPreds } = this.forward(features);
      const featmapSizes = clsScores.map((score): [number, number] => [score.shape[1], score.shape[2]]);
      const built = this.getTargets(featmapSizes, metas, targets);
      const avgFactor = this.sampling ? built.numTotalPos + built.numTotalNeg : built.numTotalPos;

      // One loss call per level, each divided by the batch's avgFactor, sums to the loss over all
      // anchors (MMDetection also computes it per level). Joining the levels first would cost a
      // concat whose gradient, a split of the largest tensor of the step, is slow on CPU backends.
      const perLevel = splitTargetsByLevel(built, clsScores.map((score) => score.shape[1] * score.shape[2] * this.numBaseAnchors), batchSize);
      const clsTerms: tf.Tensor[] = [];
      const bboxTerms: tf.Tensor[] = [];
      perLevel.forEach((levelTargets, level) => {
        const count = levelTargets.labels.length;
        const cls = tf.reshape(clsScores[level]!, [count, this.clsOutChannels]);
        const bbox = tf.reshape(bboxPreds[level]!, [count, 4]);
        clsTerms.push(this.lossCls.forward(cls, tf.tensor1d(levelTargets.labels, 'int32'), { weight: tf.tensor1d(levelTargets.labelWeights), avgFactor }));
        bboxTerms.push(
          this.lossBbox.forward(bbox, tf.tensor2d(levelTargets.bboxTargets, [count, 4]), {
            weight: tf.tensor2d(levelTargets.bboxWeights, [count, 4]),
            avgFactor,
          }),
        );
      });
      const lossCls = tf.addN(clsTerms);
      const lossBbox = tf.addN(bboxTerms);
      return { loss_cls: lossCls as tf.Scalar, loss_bbox: lossBbox as tf.Scalar };
    });
  }

  /**
   * Detects objects in each image, in original-image coordinates (MMDetection >= 2.18
   * `_get_bboxes_single` with rescale). Per level: class scores, the `nmsPre` highest
   * (anchor, class) pairs above `scoreThr`, decoded and clipped to `imageShape`. Then the
   * levels are joined, boxes not larger than `minBboxSize` dropped, flips undone, boxes
   * divided by the scale factor, class-wise NMS applied and the `maxPerImg` best kept.
   */
  async predict(features: tf.Tensor4D[], metas: ImageMeta[]): Promise<Detections[]> {
    const batchSize = this.checkBatch(features, metas);
    const featmapSizes = features.map((feature): [number, number] => [feature.shape[1], feature.shape[2]]);
    const levelOutputs = tf.tidy(() => {
      const { clsScores, bboxPreds } = this.forward(features);
      return clsScores.map((score, level) => ({
        scores: this.classScores(score, batchSize),
        deltas: tf.reshape(bboxPreds[level]!, [batchSize, -1]),
      }));
    });
    const levelData: Array<{ scores: Float32Array; deltas: Float32Array }> = [];
    try {
      for (const level of levelOutputs) {
        levelData.push({ scores: (await level.scores.data()) as Float32Array, deltas: (await level.deltas.data()) as Float32Array });
      }
    } finally {
      tf.dispose(levelOutputs.flatMap((level) => [level.scores, level.deltas]));
    }

    const anchors = this.anchorGenerator.gridAnchors(featmapSizes);
    return metas.map((meta, image) => this.predictImage(anchors, levelData, image, meta));
  }

  /** Class probabilities `[N, H * W * A * K]` of one level, without the softmax background column. */
  private classScores(logits: tf.Tensor4D, batchSize: number): tf.Tensor2D {
    if (this.useSigmoidCls) return tf.reshape(tf.sigmoid(logits), [batchSize, -1]);
    const probabilities = tf.softmax(tf.reshape(logits, [batchSize, -1, this.clsOutChannels]));
    const foreground = tf.slice(probabilities, [0, 0, 0], [-1, -1, this.numClasses]);
    return tf.reshape(foreground, [batchSize, -1]);
  }

  private predictImage(
    anchors: Float32Array[],
    levelData: ReadonlyArray<{ scores: Float32Array; deltas: Float32Array }>,
    image: number,
    meta: ImageMeta,
  ): Detections {
    const cfg = this.testCfg;
    const boxParts: Float32Array[] = [];
    const scoreParts: Float32Array[] = [];
    const labelParts: Int32Array[] = [];
    levelData.forEach(({ scores, deltas }, level) => {
      const levelAnchors = anchors[level]!;
      const numAnchors = levelAnchors.length / 4;
      const imageScores = scores.subarray(image * numAnchors * this.numClasses, (image + 1) * numAnchors * this.numClasses);
      const imageDeltas = deltas.subarray(image * numAnchors * 4, (image + 1) * numAnchors * 4);
      const selected = selectTopScores(imageScores, this.numClasses, cfg.scoreThr, cfg.nmsPre);
      const count = selected.anchorIndices.length;
      const selectedAnchors = new Float32Array(4 * count);
      const selectedDeltas = new Float32Array(4 * count);
      selected.anchorIndices.forEach((anchor, k) => {
        selectedAnchors.set(levelAnchors.subarray(4 * anchor, 4 * anchor + 4), 4 * k);
        selectedDeltas.set(imageDeltas.subarray(4 * anchor, 4 * anchor + 4), 4 * k);
      });
      boxParts.push(this.bboxCoder.decode(selectedAnchors, selectedDeltas, meta.imageShape));
      scoreParts.push(selected.scores);
      labelParts.push(selected.labels);
    });

    const boxes = concatFloat32(boxParts);
    const scores = concatFloat32(scoreParts);
    const labels = concatInt32(labelParts);
    const largeRows = keepLargeBoxes(boxes, cfg.minBboxSize);
    const candidates = largeRows === null ? { boxes, scores, labels } : pickRows({ boxes, scores, labels }, largeRows);
    mapToOriginal(candidates.boxes, meta);
    const keep = batchedNms(candidates.boxes, candidates.scores, candidates.labels, cfg.nms.iouThreshold).subarray(0, cfg.maxPerImg);
    return pickRows(candidates, keep);
  }

  /** Checks that features, levels and metas agree, and returns the batch size. */
  private checkBatch(features: tf.Tensor4D[], metas: readonly ImageMeta[]): number {
    const name = this.constructor.name;
    if (features.length !== this.anchorGenerator.numLevels) {
      throw new RangeError(`${name}: got ${features.length} feature levels, but the anchor generator has ${this.anchorGenerator.numLevels}`);
    }
    const batchSize = features[0]!.shape[0];
    features.forEach((feature, level) => {
      if (feature.rank !== 4 || feature.shape[0] !== batchSize || feature.shape[3] !== this.inChannels) {
        throw new RangeError(`${name}: feature level ${level} has shape [${feature.shape}], expected [${batchSize}, H, W, ${this.inChannels}]`);
      }
    });
    if (metas.length !== batchSize) throw new RangeError(`${name}: ${metas.length} image metas for a batch of ${batchSize} images`);
    return batchSize;
  }
}

/** Concatenates per-level arrays into one array of the same type. */
function concatLevels<A extends Float32Array | Uint8Array>(parts: A[]): A {
  if (parts.length === 1) return parts[0]!;
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new (parts[0]!.constructor as new (length: number) => A)(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function concatFloat32(parts: Float32Array[]): Float32Array {
  return concatLevels(parts);
}

function concatInt32(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Splits image-major targets (image, then level, then cell and anchor) into one set per level,
 * each image-major like `reshape(levelOutput, [N * H * W * A, C])`.
 */
function splitTargetsByLevel(
  built: AnchorTargets,
  levelCounts: readonly number[],
  batchSize: number,
): Array<Pick<AnchorTargets, 'labels' | 'labelWeights' | 'bboxTargets' | 'bboxWeights'>> {
  const numAnchors = levelCounts.reduce((sum, count) => sum + count, 0);
  const result: Array<Pick<AnchorTargets, 'labels' | 'labelWeights' | 'bboxTargets' | 'bboxWeights'>> = [];
  let start = 0;
  for (const count of levelCounts) {
    const level = {
      labels: new Int32Array(batchSize * count),
      labelWeights: new Float32Array(batchSize * count),
      bboxTargets: new Float32Array(batchSize * count * 4),
      bboxWeights: new Float32Array(batchSize * count * 4),
    };
    for (let image = 0; image < batchSize; image++) {
      const from = image * numAnchors + start;
      level.labels.set(built.labels.subarray(from, from + count), image * count);
      level.labelWeights.set(built.labelWeights.subarray(from, from + count), image * count);
      level.bboxTargets.set(built.bboxTargets.subarray(4 * from, 4 * (from + count)), 4 * image * count);
      level.bboxWeights.set(built.bboxWeights.subarray(4 * from, 4 * (from + count)), 4 * image * count);
    }
    result.push(level);
    start += count;
  }
  return result;
}

/** Maps boxes in place from the resized (and possibly flipped) image to the original image. */
function mapToOriginal(boxes: Float32Array, meta: ImageMeta): void {
  if (meta.flipped) flipBoxesHorizontal(boxes, meta.imageShape[1]);
  const [scaleX, scaleY] = meta.scaleFactor;
  for (let o = 0; o < boxes.length; o += 4) {
    boxes[o] = boxes[o]! / scaleX;
    boxes[o + 1] = boxes[o + 1]! / scaleY;
    boxes[o + 2] = boxes[o + 2]! / scaleX;
    boxes[o + 3] = boxes[o + 3]! / scaleY;
  }
}

/** Indices of the boxes wider and taller than `minSize`, or null when `minSize` <= 0 (keep all). */
function keepLargeBoxes(boxes: Float32Array, minSize: number): Int32Array | null {
  if (!(minSize > 0)) return null;
  const kept: number[] = [];
  for (let i = 0; i < boxes.length / 4; i++) {
    if (boxes[4 * i + 2]! - boxes[4 * i]! > minSize && boxes[4 * i + 3]! - boxes[4 * i + 1]! > minSize) kept.push(i);
  }
  return Int32Array.from(kept);
}

function pickRows(detections: Detections, rows: Int32Array): Detections {
  const boxes = new Float32Array(rows.length * 4);
  const scores = new Float32Array(rows.length);
  const labels = new Int32Array(rows.length);
  rows.forEach((row, k) => {
    boxes.set(detections.boxes.subarray(4 * row, 4 * row + 4), 4 * k);
    scores[k] = detections.scores[row]!;
    labels[k] = detections.labels[row]!;
  });
  return { boxes, scores, labels };
}

function checkGroundTruth(target: GroundTruth, image: number, numClasses: number): void {
  const numGts = target.labels.length;
  if (target.boxes.length !== numGts * 4) {
    throw new DataError(`targets[${image}]: ${target.boxes.length / 4} boxes but ${numGts} labels`);
  }
  target.labels.forEach((label, i) => {
    if (!(label >= 0 && label < numClasses)) {
      throw new DataError(`targets[${image}].labels[${i}] = ${label} is not a class in [0, ${numClasses})`);
    }
  });
  if (target.ignoredBoxes !== undefined && target.ignoredBoxes.length % 4 !== 0) {
    throw new DataError(`targets[${image}].ignoredBoxes: length ${target.ignoredBoxes.length} is not a multiple of 4`);
  }
}

function requirePositiveInteger(path: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new ConfigError(`${path}: '${name}' must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function resolveTrainConfig(
  options: AnchorHeadTrainConfig | undefined,
  defaults: Required<AnchorHeadTrainConfig>,
  path: string,
): Required<AnchorHeadTrainConfig> {
  if (options === undefined) return defaults;
  checkOptionKeys(path, options, ['assigner', 'allowedBorder', 'posWeight']);
  return {
    assigner: options.assigner ?? defaults.assigner,
    allowedBorder: requireNumber(path, 'allowedBorder', options.allowedBorder ?? defaults.allowedBorder),
    posWeight: requireNumber(path, 'posWeight', options.posWeight ?? defaults.posWeight),
  };
}

function resolveTestConfig(
  options: AnchorHeadTestConfig | undefined,
  defaults: Required<AnchorHeadTestConfig>,
  path: string,
): Required<AnchorHeadTestConfig> {
  if (options === undefined) return defaults;
  checkOptionKeys(path, options, ['nmsPre', 'minBboxSize', 'scoreThr', 'nms', 'maxPerImg']);
  const nms = options.nms ?? defaults.nms;
  checkOptionKeys(`${path}.nms`, nms, ['type', 'iouThreshold']);
  if (nms.type !== undefined && nms.type !== 'nms') {
    throw new ConfigError(`${path}.nms.type: only 'nms' is supported, got ${JSON.stringify(nms.type)}`);
  }
  requireNumber(`${path}.nms`, 'iouThreshold', nms.iouThreshold);
  const maxPerImg = options.maxPerImg ?? defaults.maxPerImg;
  if (!(Number.isInteger(maxPerImg) && maxPerImg > 0)) {
    throw new ConfigError(`${path}: 'maxPerImg' must be a positive integer, got ${JSON.stringify(maxPerImg)}`);
  }
  return {
    nmsPre: requireNumber(path, 'nmsPre', options.nmsPre ?? defaults.nmsPre),
    minBboxSize: requireNumber(path, 'minBboxSize', options.minBboxSize ?? defaults.minBboxSize),
    scoreThr: requireNumber(path, 'scoreThr', options.scoreThr ?? defaults.scoreThr),
    nms,
    maxPerImg,
  };
}

function requireNumber(path: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new ConfigError(`${path}: '${name}' must be a number, got ${JSON.stringify(value)}`);
  }
  return value;
}
