import { createRequire } from 'node:module';

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import { setInitSeed } from '../../../src/nn/init.ts';
import { AnchorHead, type AnchorHeadOutputs } from '../../../src/models/dense_heads/anchor_head.ts';
import { RETINA_HEAD_DEFAULTS, RetinaHead, type RetinaHeadOptions } from '../../../src/models/dense_heads/retina_head.ts';
import { DENSE_HEADS } from '../../../src/registry/index.ts';
import type { GroundTruth, ImageMeta } from '../../../src/models/types.ts';

// The Node build of tfjs-core registers no gradients; this file of its ES module build does.
createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients');

test.before(async () => {
  await tf.setBackend('cpu');
});

function meta(size: [number, number], overrides: Partial<ImageMeta> = {}): ImageMeta {
  return {
    imageId: 1,
    originalShape: size,
    imageShape: size,
    padShape: size,
    scaleFactor: [1, 1],
    flipped: false,
    filePath: 'test.jpg',
    ...overrides,
  };
}

/** One anchor of size 16 per cell of a stride-16 grid: a 2x2 map gives [-8,-8,8,8], [8,-8,24,8], [-8,8,8,24], [8,8,24,24]. */
const ONE_ANCHOR_GRID = { type: 'AnchorGenerator', strides: [16], ratios: [1], scales: [1] } as const;

/** Builds a small RetinaHead for 64x64 images, whose pyramid maps are 8x8, 4x4, 2x2, 1x1 and 1x1. */
function smallHead(options: Partial<RetinaHeadOptions> = {}): RetinaHead {
  setInitSeed(7);
  return new RetinaHead({ numClasses: 3, inChannels: 8, featChannels: 16, stackedConvs: 2, ...options });
}

function pyramid(batch: number, seed: number): tf.Tensor4D[] {
  return [8, 4, 2, 1, 1].map((size, level) => tf.randomNormal([batch, size, size, 8], 0, 1, 'float32', seed + level) as tf.Tensor4D);
}

test('parameter names and init', (t) => {
  const head = smallHead();
  const params = new Map(head.namedParameters());
  t.deepEqual(
    [...params.keys()],
    [
      'cls_convs.0.conv.weight',
      'cls_convs.0.conv.bias',
      'cls_convs.1.conv.weight',
      'cls_convs.1.conv.bias',
      'reg_convs.0.conv.weight',
      'reg_convs.0.conv.bias',
      'reg_convs.1.conv.weight',
      'reg_convs.1.conv.bias',
      'retina_cls.weight',
      'retina_cls.bias',
      'retina_reg.weight',
      'retina_reg.bias',
    ],
  );
  t.deepEqual(params.get('retina_cls.weight')!.shape, [3, 3, 16, 9 * 3]);
  t.deepEqual(params.get('retina_reg.weight')!.shape, [3, 3, 16, 9 * 4]);
  const clsBias = params.get('retina_cls.bias')!.dataSync();
  t.true(clsBias.every((b) => Math.abs(b - -Math.log(99)) < 1e-6), 'class bias -log((1 - 0.01) / 0.01)');
  t.true(params.get('retina_reg.bias')!.dataSync().every((b) => b === 0));
  t.true(params.get('cls_convs.0.conv.bias')!.dataSync().every((b) => b === 0));
  const weights = Array.from(params.get('retina_cls.weight')!.dataSync());
  const std = Math.sqrt(weights.reduce((sum, w) => sum + w * w, 0) / weights.length);
  t.true(Math.abs(std - 0.01) < 0.001, `weight std ${std}`);
  head.dispose();
});

test('group norm replaces conv bias', (t) => {
  const head = smallHead({ norm: { type: 'GN', numGroups: 4 } });
  const names = head.namedParameters().map(([name]) => name);
  t.true(names.includes('cls_convs.0.gn.weight'));
  t.true(names.includes('reg_convs.1.gn.bias'));
  t.false(names.includes('cls_convs.0.conv.bias'));
  t.true(names.includes('retina_cls.bias'));
  head.dispose();
});

test('default head parameter count', (t) => {
  const head = DENSE_HEADS.build({ type: 'RetinaHead', numClasses: 80, inChannels: 256 }, 'model.bboxHead') as RetinaHead;
  // 8 convs of 3x3x256x256 + 256, retina_cls 3x3x256x720 + 720, retina_reg 3x3x256x36 + 36.
  t.is(head.countParameters(), 8 * (589_824 + 256) + (1_658_880 + 720) + (82_944 + 36));
  t.is(head.numBaseAnchors, 9);
  t.deepEqual(head.testCfg, RETINA_HEAD_DEFAULTS.testCfg);
  head.dispose();
});

test('forward output shapes', (t) => {
  const head = smallHead();
  const features = pyramid(2, 1);
  const before = tf.memory().numTensors;
  const { clsScores, bboxPreds } = head.forward(features);
  t.deepEqual(clsScores.map((s) => s.shape), [8, 4, 2, 1, 1].map((s) => [2, s, s, 27]));
  t.deepEqual(bboxPreds.map((s) => s.shape), [8, 4, 2, 1, 1].map((s) => [2, s, s, 36]));
  tf.dispose([...clsScores, ...bboxPreds]);
  t.is(tf.memory().numTensors, before);
  tf.dispose(features);
  head.dispose();
});

function targetHead(): RetinaHead {
  return new RetinaHead({
    numClasses: 3,
    inChannels: 4,
    featChannels: 4,
    stackedConvs: 1,
    anchorGenerator: ONE_ANCHOR_GRID,
    trainCfg: { assigner: { type: 'MaxIoUAssigner', posIouThr: 0.5, negIouThr: 0.4, matchLowQuality: false } },
  });
}

// Boxes A (label 2) and B (label 0) overlap anchors 3 and 0 with IoU 1 and 0.75; C (label 1)
// overlaps anchor 2 with IoU 112 / 256 = 0.4375, between the thresholds, so anchor 2 is ignored.
const GT_ABC: GroundTruth = {
  boxes: Float32Array.of(8, 8, 24, 24, -8, -8, 8, 4, -8, 8, 8, 15),
  labels: Int32Array.of(2, 0, 1),
};
const EMPTY_GT: GroundTruth = { boxes: new Float32Array(0), labels: new Int32Array(0) };

test('targets by hand', (t) => {
  const head = targetHead();
  // Image 1 is padded to 16x16 inside the 32x32 batch, so only its cell (0, 0) is valid.
  const targets = head.getTargets([[2, 2]], [meta([32, 32]), meta([16, 16])], [GT_ABC, EMPTY_GT]);
  t.deepEqual([...targets.labels], [0, 3, 3, 2, 3, 3, 3, 3]);
  t.deepEqual([...targets.labelWeights], [1, 1, 0, 1, 1, 0, 0, 0]);
  t.deepEqual([...targets.bboxWeights], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, ...new Array(16).fill(0)]);
  // Anchor 0 (centre 0, 0, size 16) against B (centre 0, -2, size 16 x 12).
  const row0 = [...targets.bboxTargets.subarray(0, 4)];
  t.deepEqual(row0.slice(0, 3), [0, -0.125, 0]);
  t.true(Math.abs(row0[3]! - Math.log(12 / 16)) < 1e-6);
  t.deepEqual([...targets.bboxTargets.subarray(12, 16)], [0, 0, 0, 0]);
  // At least one positive and one negative per image: (2 + 1) positives, (1 + 1) negatives.
  t.is(targets.numTotalPos, 3);
  t.is(targets.numTotalNeg, 2);
  head.dispose();
});

test('allowedBorder drops anchors outside image', (t) => {
  const head = new RetinaHead({
    numClasses: 3,
    inChannels: 4,
    featChannels: 4,
    stackedConvs: 1,
    anchorGenerator: ONE_ANCHOR_GRID,
    trainCfg: { assigner: { type: 'MaxIoUAssigner', posIouThr: 0.5, negIouThr: 0.4 }, allowedBorder: 0 },
  });
  // Only anchor 3 [8, 8, 24, 24] lies inside a 32x32 image.
  const targets = head.getTargets([[2, 2]], [meta([32, 32])], [EMPTY_GT]);
  t.deepEqual([...targets.labelWeights], [0, 0, 0, 1]);
  head.dispose();
});

/** float64 focal loss of one logit against a 0/1 target. */
function focal(x: number, target: number): number {
  const p = 1 / (1 + Math.exp(-x));
  const bce = Math.max(x, 0) - x * target + Math.log1p(Math.exp(-Math.abs(x)));
  const oneMinusPt = target === 1 ? 1 - p : p;
  return (target === 1 ? 0.25 : 0.75) * oneMinusPt ** 2 * bce;
}

test('loss equals hand assembly', (t) => {
  setInitSeed(3);
  const head = targetHead();
  const features = [tf.randomNormal([2, 2, 2, 4], 0, 1, 'float32', 11) as tf.Tensor4D];
  const metas = [meta([32, 32]), meta([16, 16])];
  const losses = head.loss(features, metas, [GT_ABC, EMPTY_GT]);
  const { clsScores, bboxPreds } = head.forward(features);
  const logits = clsScores[0]!.dataSync();
  const deltas = bboxPreds[0]!.dataSync();

  // Labels and weights from 'targets by hand': anchors (image, cell) in order.
  const labels = [0, 3, 3, 2, 3, 3, 3, 3];
  const weights = [1, 1, 0, 1, 1, 0, 0, 0];
  let clsSum = 0;
  labels.forEach((label, anchor) => {
    for (let k = 0; k < 3; k++) clsSum += weights[anchor]! * focal(logits[anchor * 3 + k]!, label === k ? 1 : 0);
  });
  const boxTargets = [[0, -0.125, 0, Math.log(12 / 16)], [0, 0, 0, 0]];
  let boxSum = 0;
  [0, 3].forEach((anchor, p) => {
    for (let c = 0; c < 4; c++) boxSum += Math.abs(deltas[anchor * 4 + c]! - boxTargets[p]![c]!);
  });
  const avgFactor = 3 + 1.1920928955078125e-7;
  t.true(Math.abs(losses['loss_cls']!.dataSync()[0]! - clsSum / avgFactor) < 1e-6);
  t.true(Math.abs(losses['loss_bbox']!.dataSync()[0]! - boxSum / avgFactor) < 1e-6);
  tf.dispose([...features, ...Object.values(losses), ...clsScores, ...bboxPreds]);
  head.dispose();
});

test('no ground truth gives zero box loss', (t) => {
  const head = smallHead();
  const features = pyramid(1, 5);
  const losses = head.loss(features, [meta([64, 64])], [EMPTY_GT]);
  t.true(losses['loss_cls']!.dataSync()[0]! > 0);
  t.is(losses['loss_bbox']!.dataSync()[0], 0);
  tf.dispose([...features, ...Object.values(losses)]);
  head.dispose();
});

test('loss and gradients free their tensors', (t) => {
  const head = smallHead();
  const features = pyramid(2, 9);
  const metas = [meta([64, 64]), meta([64, 48])];
  const targets: GroundTruth[] = [
    { boxes: Float32Array.of(10, 12, 40, 50), labels: Int32Array.of(1) },
    { boxes: Float32Array.of(0, 0, 20, 20, 30, 5, 60, 40), labels: Int32Array.of(0, 2), ignoredBoxes: Float32Array.of(0, 0, 5, 5) },
  ];
  const variables = head.trainableParameters().map(([, variable]) => variable);
  const step = () => {
    const { value, grads } = tf.variableGrads(() => {
      const losses = head.loss(features, metas, targets);
      return tf.addN(Object.values(losses)) as tf.Scalar;
    }, variables);
    const gradientValues = Object.values(grads).map((g) => g.dataSync());
    tf.dispose([value, ...Object.values(grads)]);
    return gradientValues;
  };
  const first = step();
  t.true(first.every((values) => values.every(Number.isFinite)));
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) step();
  t.is(tf.memory().numTensors, before);
  tf.dispose(features);
  head.dispose();
});

test('SGD steps lower the loss', (t) => {
  const head = smallHead();
  const features = pyramid(1, 21);
  const metas = [meta([64, 64])];
  const targets: GroundTruth[] = [{ boxes: Float32Array.of(12, 8, 44, 40), labels: Int32Array.of(2) }];
  const variables = head.trainableParameters().map(([, variable]) => variable);
  const history: Array<{ cls: number; bbox: number }> = [];
  for (let i = 0; i < 10; i++) {
    const { value, grads } = tf.variableGrads(() => {
      const losses = head.loss(features, metas, targets);
      history.push({ cls: losses['loss_cls']!.dataSync()[0]!, bbox: losses['loss_bbox']!.dataSync()[0]! });
      return tf.addN(Object.values(losses)) as tf.Scalar;
    }, variables);
    for (const variable of variables) {
      const updated = tf.tidy(() => tf.sub(variable, tf.mul(grads[variable.name]!, 0.2)));
      variable.assign(updated);
      updated.dispose();
    }
    tf.dispose([value, ...Object.values(grads)]);
  }
  const first = history[0]!;
  const last = history.at(-1)!;
  const trace = history.map(({ cls, bbox }) => `${cls.toFixed(3)}+${bbox.toFixed(3)}`).join(', ');
  t.true(last.cls < first.cls, `class loss: ${trace}`);
  t.true(last.bbox < 0.6 * first.bbox, `box loss: ${trace}`);
  t.true(last.cls + last.bbox < 0.8 * (first.cls + first.bbox), `total: ${trace}`);
  tf.dispose(features);
  head.dispose();
});

/** A head whose forward returns fixed outputs, to test post-processing alone. */
class FixedOutputHead extends AnchorHead {
  constructor(
    private readonly logits: number[][],
    private readonly deltas: number[][],
    testCfg: RetinaHeadOptions['testCfg'] = {},
  ) {
    super({ numClasses: 2, inChannels: 1, anchorGenerator: ONE_ANCHOR_GRID, testCfg }, RETINA_HEAD_DEFAULTS, 'fixedHead');
  }

  forward(): AnchorHeadOutputs {
    return {
      clsScores: [tf.tensor4d(this.logits.flat(), [1, 2, 2, 2])],
      bboxPreds: [tf.tensor4d(this.deltas.flat(), [1, 2, 2, 4])],
    };
  }
}

const logit = (p: number) => Math.log(p / (1 - p));
// Anchor 0: class 0 at 0.6; anchor 1: class 0 at 0.04 (below scoreThr); anchor 3: class 1 at 0.9.
const FIXED_LOGITS = [
  [logit(0.6), logit(0.01)],
  [logit(0.04), logit(0.01)],
  [logit(0.01), logit(0.01)],
  [logit(0.01), logit(0.9)],
];
const ZERO_DELTAS = [0, 1, 2, 3].map(() => [0, 0, 0, 0]);
const DUMMY_FEATURES = () => [tf.zeros([1, 2, 2, 1]) as tf.Tensor4D];

function rounded(values: ArrayLike<number>): number[] {
  return Array.from(values, (v) => Math.round(v * 1e4) / 1e4);
}

test.serial('predict decodes, clips and rescales', async (t) => {
  const head = new FixedOutputHead(FIXED_LOGITS, ZERO_DELTAS);
  const features = DUMMY_FEATURES();
  const before = tf.memory().numTensors;
  const [detections] = await head.predict(features, [meta([32, 32], { scaleFactor: [2, 2], originalShape: [16, 16] })]);
  t.is(tf.memory().numTensors, before);
  // Anchor 3 [8, 8, 24, 24] / 2; anchor 0 [-8, -8, 8, 8] clipped to [0, 0, 8, 8], then / 2.
  t.deepEqual(rounded(detections!.boxes), [4, 4, 12, 12, 0, 0, 4, 4]);
  t.deepEqual(rounded(detections!.scores), [0.9, 0.6]);
  t.deepEqual([...detections!.labels], [1, 0]);
  tf.dispose(features);
});

test.serial('predict undoes horizontal flip', async (t) => {
  const head = new FixedOutputHead(FIXED_LOGITS, ZERO_DELTAS);
  const features = DUMMY_FEATURES();
  const [detections] = await head.predict(features, [meta([32, 32], { scaleFactor: [2, 2], flipped: true })]);
  // Anchor 0 clipped to [0, 0, 8, 8] in a 32-wide flipped image is [24, 0, 32, 8] before the flip.
  t.deepEqual(rounded(detections!.boxes), [4, 4, 12, 12, 12, 0, 16, 4]);
  tf.dispose(features);
});

test.serial('predict applies thresholds, NMS and caps', async (t) => {
  // Deltas move anchor 1 onto anchor 0's place: same box, same class.
  const deltas = [[0, 0, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]];
  const logits = [
    [logit(0.6), logit(0.01)],
    [logit(0.5), logit(0.01)],
    [logit(0.01), logit(0.01)],
    [logit(0.01), logit(0.9)],
  ];
  const features = DUMMY_FEATURES();
  const meta32 = meta([32, 32]);
  const suppressed = await new FixedOutputHead(logits, deltas, { scoreThr: 0.05 }).predict(features, [meta32]);
  t.deepEqual(rounded(suppressed[0]!.scores), [0.9, 0.6], 'the 0.5 duplicate is suppressed');
  const loose = await new FixedOutputHead(logits, deltas, { nms: { type: 'nms', iouThreshold: 1 } }).predict(features, [meta32]);
  t.deepEqual(rounded(loose[0]!.scores), [0.9, 0.6, 0.5]);
  const topOne = await new FixedOutputHead(logits, deltas, { nmsPre: 1 }).predict(features, [meta32]);
  t.deepEqual(rounded(topOne[0]!.scores), [0.9]);
  const capped = await new FixedOutputHead(logits, deltas, { maxPerImg: 1, nms: { iouThreshold: 1 } }).predict(features, [meta32]);
  t.deepEqual(rounded(capped[0]!.scores), [0.9]);
  // Anchor 0's box is clipped to 8x8, which is not larger than 8; anchor 3's box is 16x16.
  const large = await new FixedOutputHead(logits, deltas, { minBboxSize: 8 }).predict(features, [meta32]);
  t.deepEqual(rounded(large[0]!.scores), [0.9]);
  const none = await new FixedOutputHead(logits, deltas, { scoreThr: 0.95 }).predict(features, [meta32]);
  t.is(none[0]!.boxes.length, 0);
  t.true(none[0]!.labels instanceof Int32Array);
  tf.dispose(features);
});

test.serial('predict end to end', async (t) => {
  const head = smallHead({ testCfg: { scoreThr: 0, maxPerImg: 20 } });
  const features = pyramid(2, 31);
  const metas = [meta([64, 64], { scaleFactor: [0.5, 0.5], originalShape: [128, 128] }), meta([48, 64], { scaleFactor: [2, 2], originalShape: [24, 32] })];
  const before = tf.memory().numTensors;
  const results = await head.predict(features, metas);
  t.is(tf.memory().numTensors, before);
  results.forEach((result, i) => {
    const [height, width] = metas[i]!.originalShape;
    t.is(result.boxes.length, 20 * 4);
    t.true(result.boxes.every((v, k) => v >= 0 && v <= (k % 2 === 0 ? width : height) + 1e-3), `image ${i} boxes inside the original image`);
    t.true(result.scores.every((s, k) => k === 0 || s <= result.scores[k - 1]!), 'scores descending');
    t.true(result.labels.every((label) => label >= 0 && label < 3));
  });
  tf.dispose(features);
  head.dispose();
});

test('input and config errors', (t) => {
  const head = smallHead();
  const features = pyramid(1, 41);
  t.regex(t.throws(() => head.loss(features.slice(0, 4), [meta([64, 64])], [EMPTY_GT]))!.message, /got 4 feature levels, but the anchor generator has 5/);
  t.regex(t.throws(() => head.loss(features, [meta([64, 64]), meta([64, 64])], [EMPTY_GT, EMPTY_GT]))!.message, /2 image metas for a batch of 1/);
  t.regex(
    t.throws(() => head.loss(features, [meta([64, 64])], [{ boxes: Float32Array.of(0, 0, 4, 4), labels: Int32Array.of(3) }]))!.message,
    /targets\[0\]\.labels\[0\] = 3 is not a class in \[0, 3\)/,
  );
  t.regex(t.throws(() => smallHead({ stackedConv: 2 } as never))!.message, /bboxHead: unknown option 'stackedConv' \(did you mean 'stackedConvs'\?\)/);
  t.regex(t.throws(() => smallHead({ norm: { type: 'GN', numGroups: 5 } }))!.message, /bboxHead\.norm\.numGroups: 5 groups do not divide a layer of 16 channels/);
  t.regex(
    t.throws(() => DENSE_HEADS.build({ type: 'RetinaHead', numClasses: 3, inChannels: 8, testCfg: { nms: { iouThr: 0.5 } } }, 'model.bboxHead'))!.message,
    /^model\.bboxHead\.testCfg\.nms: unknown option 'iouThr'/,
  );
  t.regex(
    t.throws(() => DENSE_HEADS.build({ type: 'RetinaHead', numClasses: 3, inChannels: 8, lossCls: { type: 'FocalLoss', gama: 2 } }, 'model.bboxHead'))!.message,
    /^model\.bboxHead\.lossCls: unknown option 'gama'/,
  );
  tf.dispose(features);
  head.dispose();
});
