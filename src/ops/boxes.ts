import * as tf from '@tensorflow/tfjs-core';

/**
 * Box geometry on flat `[N, 4]` arrays (row-major, absolute pixels). The JS functions compute
 * in float64 whatever the input array type, so exact thresholds (IoU equal to 0.5) compare
 * exactly. Widths are `x2 - x1` with no +1, as in torchvision and MMDetection 2.x.
 */

/** A flat `[N, 4]` box array. */
export type BoxArray = Float32Array | Float64Array;

export type OverlapMode = 'iou' | 'iof';

export interface OverlapOptions {
  /** 'iou' divides by the union, 'iof' by the area of the box from `boxes1`. */
  mode?: OverlapMode;
  /**
   * Lower bound of the denominator. 0 (the default) gives torchvision's `box_iou`, where two
   * zero-area boxes give 0/0 = NaN. MMDetection's `bbox_overlaps` uses 1e-6, so those pairs give 0.
   */
  eps?: number;
}

/** Returns the number of boxes in a flat `[N, 4]` array, or throws a RangeError when the length is not a multiple of 4. */
export function numBoxes(boxes: ArrayLike<number>, name = 'boxes'): number {
  if (boxes.length % 4 !== 0) {
    throw new RangeError(`${name}: expected a flat [N, 4] array, got length ${boxes.length} (not a multiple of 4)`);
  }
  return boxes.length / 4;
}

/** Areas `(x2 - x1) * (y2 - y1)` of `[N, 4]` boxes, in float64. */
export function boxAreas(boxes: BoxArray): Float64Array {
  const n = numBoxes(boxes);
  const areas = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = 4 * i;
    areas[i] = (boxes[o + 2]! - boxes[o]!) * (boxes[o + 3]! - boxes[o + 1]!);
  }
  return areas;
}

/**
 * Pairwise overlaps of `boxes1` `[N, 4]` against `boxes2` `[M, 4]`, as a row-major `[N, M]`
 * Float64Array. The intersection uses the overlap width and height clamped at 0, so boxes
 * that only touch along an edge or a corner give 0.
 */
export function boxOverlaps(boxes1: BoxArray, boxes2: BoxArray, options: OverlapOptions = {}): Float64Array {
  const mode = options.mode ?? 'iou';
  const eps = options.eps ?? 0;
  const n = numBoxes(boxes1, 'boxes1');
  const m = numBoxes(boxes2, 'boxes2');
  const areas1 = boxAreas(boxes1);
  const areas2 = boxAreas(boxes2);
  const result = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    const x1 = boxes1[4 * i]!;
    const y1 = boxes1[4 * i + 1]!;
    const x2 = boxes1[4 * i + 2]!;
    const y2 = boxes1[4 * i + 3]!;
    const area1 = areas1[i]!;
    for (let j = 0; j < m; j++) {
      const o = 4 * j;
      const w = Math.min(x2, boxes2[o + 2]!) - Math.max(x1, boxes2[o]!);
      const h = Math.min(y2, boxes2[o + 3]!) - Math.max(y1, boxes2[o + 1]!);
      const inter = w > 0 && h > 0 ? w * h : 0;
      const denominator = mode === 'iou' ? area1 + areas2[j]! - inter : area1;
      result[i * m + j] = inter / Math.max(denominator, eps);
    }
  }
  return result;
}

/** Pairwise IoU `[N, M]` with torchvision's `box_iou` semantics (two zero-area boxes give NaN). */
export function boxIou(boxes1: BoxArray, boxes2: BoxArray): Float64Array {
  return boxOverlaps(boxes1, boxes2, { mode: 'iou' });
}

/**
 * Pairwise intersection over foreground `[N, M]`: the intersection divided by the area of the
 * box from `boxes1`. MMDetection uses it to find anchors that lie mostly inside ignore regions.
 * A zero-area box in `boxes1` gives 0 (the denominator is at least `eps`, default 1e-6).
 */
export function boxIof(boxes1: BoxArray, boxes2: BoxArray, eps = 1e-6): Float64Array {
  return boxOverlaps(boxes1, boxes2, { mode: 'iof', eps });
}

/**
 * Pairwise IoU `[N, M]` of two `[N, 4]` and `[M, 4]` box tensors in float32, with
 * torchvision's semantics (two zero-area boxes give NaN unless `eps` > 0).
 */
export function boxIouTensor(boxes1: tf.Tensor2D, boxes2: tf.Tensor2D, eps = 0): tf.Tensor2D {
  return tf.tidy(() => {
    const [ax1, ay1, ax2, ay2] = tf.split(boxes1, 4, 1) as tf.Tensor2D[];
    const [bx1, by1, bx2, by2] = tf.split(tf.transpose(boxes2), 4, 0) as tf.Tensor2D[];
    const width = tf.relu(tf.sub(tf.minimum(ax2!, bx2!), tf.maximum(ax1!, bx1!)));
    const height = tf.relu(tf.sub(tf.minimum(ay2!, by2!), tf.maximum(ay1!, by1!)));
    const inter = tf.mul(width, height);
    const area1 = tf.mul(tf.sub(ax2!, ax1!), tf.sub(ay2!, ay1!));
    const area2 = tf.mul(tf.sub(bx2!, bx1!), tf.sub(by2!, by1!));
    const union = tf.sub(tf.add(area1, area2), inter);
    const denominator = eps > 0 ? tf.maximum(union, eps) : union;
    return tf.div(inter, denominator) as tf.Tensor2D;
  });
}

/**
 * Reorders the four columns of `[N, 4]` boxes: output column k is input column `order[k]`.
 * Tensors go through `tf.gather`, arrays are copied into a new array of the same type.
 */
function permuteColumns<B extends BoxArray | tf.Tensor2D>(boxes: B, order: readonly number[]): B {
  if (boxes instanceof tf.Tensor) return tf.gather(boxes, [...order], 1) as B;
  const n = numBoxes(boxes);
  const out = new (boxes.constructor as new (length: number) => BoxArray)(boxes.length);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 4; k++) out[4 * i + k] = boxes[4 * i + order[k]!]!;
  }
  return out as B;
}

/** Converts xyxy boxes to yxyx, the order of `tf.image.nonMaxSuppression` and `cropAndResize`. */
export function xyxyToYxyx<B extends BoxArray | tf.Tensor2D>(boxes: B): B {
  return permuteColumns(boxes, [1, 0, 3, 2]);
}

/** Converts yxyx boxes back to xyxy. */
export function yxyxToXyxy<B extends BoxArray | tf.Tensor2D>(boxes: B): B {
  return permuteColumns(boxes, [1, 0, 3, 2]);
}

/** Converts `[x, y, w, h]` boxes (COCO json) to xyxy: `x2 = x + w`, `y2 = y + h`. */
export function xywhToXyxy<B extends BoxArray | tf.Tensor2D>(boxesXywh: B): B {
  if (boxesXywh instanceof tf.Tensor) {
    return tf.tidy(() => {
      const [xy, wh] = tf.split(boxesXywh, 2, 1);
      return tf.concat([xy!, tf.add(xy!, wh!)], 1);
    }) as B;
  }
  const out = boxesXywh.slice();
  for (let o = 0; o < out.length; o += 4) {
    out[o + 2] = out[o]! + out[o + 2]!;
    out[o + 3] = out[o + 1]! + out[o + 3]!;
  }
  return out as B;
}

/** Converts xyxy boxes to `[x, y, w, h]` (COCO results): `w = x2 - x1`, `h = y2 - y1`. */
export function xyxyToXywh<B extends BoxArray | tf.Tensor2D>(boxes: B): B {
  if (boxes instanceof tf.Tensor) {
    return tf.tidy(() => {
      const [xy, xy2] = tf.split(boxes, 2, 1);
      return tf.concat([xy!, tf.sub(xy2!, xy!)], 1);
    }) as B;
  }
  numBoxes(boxes);
  const out = boxes.slice();
  for (let o = 0; o < out.length; o += 4) {
    out[o + 2] = out[o + 2]! - out[o]!;
    out[o + 3] = out[o + 3]! - out[o + 1]!;
  }
  return out as B;
}

/**
 * Clips xyxy boxes in place to an image of `shape = [height, width]`: x to [0, width] and y to
 * [0, height] (not width - 1, as in MMDetection 2.x). Returns `boxes`.
 */
export function clipBoxes(boxes: BoxArray, shape: readonly [number, number]): BoxArray {
  numBoxes(boxes);
  const [height, width] = shape;
  for (let o = 0; o < boxes.length; o += 4) {
    boxes[o] = Math.min(Math.max(boxes[o]!, 0), width);
    boxes[o + 1] = Math.min(Math.max(boxes[o + 1]!, 0), height);
    boxes[o + 2] = Math.min(Math.max(boxes[o + 2]!, 0), width);
    boxes[o + 3] = Math.min(Math.max(boxes[o + 3]!, 0), height);
  }
  return boxes;
}

/** Returns xyxy box tensor `[N, 4]` clipped to `shape = [height, width]`, as `clipBoxes`. */
export function clipBoxesTensor(boxes: tf.Tensor2D, shape: readonly [number, number]): tf.Tensor2D {
  const [height, width] = shape;
  return tf.tidy(() => tf.maximum(tf.minimum(boxes, tf.tensor1d([width, height, width, height])), 0) as tf.Tensor2D);
}

/**
 * Maps xyxy boxes in place through a horizontal flip of an image `width` pixels wide:
 * `x1' = width - x2`, `x2' = width - x1` (MMDetection's `bbox_flip`). Flipping twice restores them.
 */
export function flipBoxesHorizontal(boxes: BoxArray, width: number): BoxArray {
  numBoxes(boxes);
  for (let o = 0; o < boxes.length; o += 4) {
    const x1 = boxes[o]!;
    boxes[o] = width - boxes[o + 2]!;
    boxes[o + 2] = width - x1;
  }
  return boxes;
}
