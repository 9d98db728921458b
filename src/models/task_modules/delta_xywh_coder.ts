import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../../config/config.ts';
import { numBoxes, type BoxArray } from '../../ops/boxes.ts';
import { BOX_CODERS } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import type { BoxCoder } from './types.ts';

/**
 * MMDetection 2.x `DeltaXYWHBBoxCoder` (bbox2delta / delta2bbox). A box is encoded against a
 * proposal p as `d = ((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph))`, then
 * normalised: `(d - means) / stds`. Centres are `(x1 + x2) / 2` and sizes `x2 - x1` (no +1).
 * Decoding reverses this, clamps dw and dh to |log(whRatioClip)| (default |log(16 / 1000)|, so a
 * box grows or shrinks by at most 62.5x), and clips x to [0, W] and y to [0, H] when a
 * `maxShape = [H, W]` is given and `clipBorder` is set.
 * The JS methods compute in float64 and return Float32Array; the tensor methods run in float32.
 */

export interface DeltaXYWHBBoxCoderOptions {
  targetMeans?: readonly [number, number, number, number];
  targetStds?: readonly [number, number, number, number];
  /** Clip decoded boxes to `maxShape` when one is given (default true). */
  clipBorder?: boolean;
  /** Clamp the decoded centre shift to ±ctrClamp pixels and only the upper end of dw, dh (default false). */
  addCtrClamp?: boolean;
  ctrClamp?: number;
}

declare module '../../config/component_types.ts' {
  interface BoxCoderTypes {
    DeltaXYWHBBoxCoder: DeltaXYWHBBoxCoderOptions;
  }
}

const OPTION_KEYS = ['targetMeans', 'targetStds', 'clipBorder', 'addCtrClamp', 'ctrClamp'] as const;

/** Default ratio bound of decoding: widths and heights change by at most 1000 / 16. */
export const DEFAULT_WH_RATIO_CLIP = 16 / 1000;

export class DeltaXYWHBBoxCoder implements BoxCoder {
  readonly means: readonly [number, number, number, number];
  readonly stds: readonly [number, number, number, number];
  readonly clipBorder: boolean;
  readonly addCtrClamp: boolean;
  readonly ctrClamp: number;

  constructor(options: DeltaXYWHBBoxCoderOptions = {}, path = 'DeltaXYWHBBoxCoder') {
    checkOptionKeys(path, options, OPTION_KEYS);
    this.means = checkFour(path, 'targetMeans', options.targetMeans ?? [0, 0, 0, 0]);
    this.stds = checkFour(path, 'targetStds', options.targetStds ?? [1, 1, 1, 1]);
    if (this.stds.some((s) => !(s > 0))) {
      throw new ConfigError(`${path}: 'targetStds' must be positive, got ${JSON.stringify(this.stds)}`);
    }
    this.clipBorder = options.clipBorder ?? true;
    this.addCtrClamp = options.addCtrClamp ?? false;
    this.ctrClamp = options.ctrClamp ?? 32;
  }

  /** Encodes `gt` `[N, 4]` against `proposals` `[N, 4]` (row i against row i) as deltas `[N, 4]`. */
  encode(proposals: BoxArray, gt: BoxArray): Float32Array {
    const n = numBoxes(proposals, 'proposals');
    if (numBoxes(gt, 'gt') !== n) throw new RangeError(`DeltaXYWHBBoxCoder.encode: ${n} proposals but ${gt.length / 4} gt boxes`);
    const [mx, my, mw, mh] = this.means;
    const [sx, sy, sw, sh] = this.stds;
    const deltas = new Float32Array(4 * n);
    for (let o = 0; o < 4 * n; o += 4) {
      const pw = proposals[o + 2]! - proposals[o]!;
      const ph = proposals[o + 3]! - proposals[o + 1]!;
      const px = (proposals[o]! + proposals[o + 2]!) * 0.5;
      const py = (proposals[o + 1]! + proposals[o + 3]!) * 0.5;
      const gw = gt[o + 2]! - gt[o]!;
      const gh = gt[o + 3]! - gt[o + 1]!;
      const gx = (gt[o]! + gt[o + 2]!) * 0.5;
      const gy = (gt[o + 1]! + gt[o + 3]!) * 0.5;
      deltas[o] = ((gx - px) / pw - mx) / sx;
      deltas[o + 1] = ((gy - py) / ph - my) / sy;
      deltas[o + 2] = (Math.log(gw / pw) - mw) / sw;
      deltas[o + 3] = (Math.log(gh / ph) - mh) / sh;
    }
    return deltas;
  }

  /**
   * Decodes `deltas` `[N, 4 * K]` against `proposals` `[N, 4]` into boxes `[N, 4 * K]`. Each
   * group of four (one per class) uses the same proposal.
   */
  decode(
    proposals: BoxArray,
    deltas: BoxArray,
    maxShape: readonly [number, number] | null = null,
    whRatioClip = DEFAULT_WH_RATIO_CLIP,
  ): Float32Array {
    const n = numBoxes(proposals, 'proposals');
    const groups = this.groupsPerProposal(n, deltas.length);
    const maxRatio = Math.abs(Math.log(whRatioClip));
    const [mx, my, mw, mh] = this.means;
    const [sx, sy, sw, sh] = this.stds;
    const clip = this.clipBorder && maxShape !== null;
    const height = maxShape?.[0] ?? 0;
    const width = maxShape?.[1] ?? 0;
    const boxes = new Float32Array(deltas.length);
    for (let i = 0; i < n; i++) {
      const p = 4 * i;
      const px = (proposals[p]! + proposals[p + 2]!) * 0.5;
      const py = (proposals[p + 1]! + proposals[p + 3]!) * 0.5;
      const pw = proposals[p + 2]! - proposals[p]!;
      const ph = proposals[p + 3]! - proposals[p + 1]!;
      for (let k = 0; k < groups; k++) {
        const o = 4 * (i * groups + k);
        let dxw = pw * (deltas[o]! * sx + mx);
        let dyh = ph * (deltas[o + 1]! * sy + my);
        let dw = deltas[o + 2]! * sw + mw;
        let dh = deltas[o + 3]! * sh + mh;
        if (this.addCtrClamp) {
          dxw = clamp(dxw, -this.ctrClamp, this.ctrClamp);
          dyh = clamp(dyh, -this.ctrClamp, this.ctrClamp);
          dw = Math.min(dw, maxRatio);
          dh = Math.min(dh, maxRatio);
        } else {
          dw = clamp(dw, -maxRatio, maxRatio);
          dh = clamp(dh, -maxRatio, maxRatio);
        }
        const gx = px + dxw;
        const gy = py + dyh;
        const gw = pw * Math.exp(dw);
        const gh = ph * Math.exp(dh);
        let x1 = gx - gw * 0.5;
        let y1 = gy - gh * 0.5;
        let x2 = gx + gw * 0.5;
        let y2 = gy + gh * 0.5;
        if (clip) {
          x1 = clamp(x1, 0, width);
          y1 = clamp(y1, 0, height);
          x2 = clamp(x2, 0, width);
          y2 = clamp(y2, 0, height);
        }
        boxes[o] = x1;
        boxes[o + 1] = y1;
        boxes[o + 2] = x2;
        boxes[o + 3] = y2;
      }
    }
    return boxes;
  }

  /** Tensor version of `encode`: proposals and gt `[N, 4]` in, deltas `[N, 4]` out (float32). */
  encodeTensor(proposals: tf.Tensor2D, gt: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const [pxy, pwh] = centreSize(proposals);
      const [gxy, gwh] = centreSize(gt);
      const dxy = tf.div(tf.sub(gxy, pxy), pwh);
      const dwh = tf.log(tf.div(gwh, pwh));
      const deltas = tf.concat([dxy, dwh], 1);
      return tf.div(tf.sub(deltas, tf.tensor1d([...this.means])), tf.tensor1d([...this.stds])) as tf.Tensor2D;
    });
  }

  /** Tensor version of `decode`: proposals `[N, 4]` and deltas `[N, 4 * K]` in, boxes `[N, 4 * K]` out. */
  decodeTensor(
    proposals: tf.Tensor2D,
    deltas: tf.Tensor2D,
    maxShape: readonly [number, number] | null = null,
    whRatioClip = DEFAULT_WH_RATIO_CLIP,
  ): tf.Tensor2D {
    const n = proposals.shape[0];
    if (deltas.shape[0] !== n || deltas.shape[1] % 4 !== 0) {
      throw new RangeError(`DeltaXYWHBBoxCoder.decodeTensor: deltas of shape [${deltas.shape}] do not match [${n}, 4 * K]`);
    }
    const groups = deltas.shape[1] / 4;
    const maxRatio = Math.abs(Math.log(whRatioClip));
    return tf.tidy(() => {
      const flat = tf.reshape(deltas, [n * groups, 4]);
      const denormalised = tf.add(tf.mul(flat, tf.tensor1d([...this.stds])), tf.tensor1d([...this.means]));
      let [dxy, dwh] = tf.split(denormalised, 2, 1) as [tf.Tensor2D, tf.Tensor2D];
      const repeated = tf.reshape(tf.tile(proposals, [1, groups]), [n * groups, 4]) as tf.Tensor2D;
      const [pxy, pwh] = centreSize(repeated);
      let dxyPixels = tf.mul(pwh, dxy);
      if (this.addCtrClamp) {
        dxyPixels = tf.clipByValue(dxyPixels, -this.ctrClamp, this.ctrClamp);
        dwh = tf.minimum(dwh, maxRatio);
      } else {
        dwh = tf.clipByValue(dwh, -maxRatio, maxRatio);
      }
      const gxy = tf.add(pxy, dxyPixels);
      const halfWh = tf.mul(tf.mul(pwh, tf.exp(dwh)), 0.5);
      let boxes = tf.concat([tf.sub(gxy, halfWh), tf.add(gxy, halfWh)], 1);
      if (this.clipBorder && maxShape !== null) {
        const [height, width] = maxShape;
        boxes = tf.maximum(tf.minimum(boxes, tf.tensor1d([width, height, width, height])), 0);
      }
      return tf.reshape(boxes, [n, groups * 4]) as tf.Tensor2D;
    });
  }

  private groupsPerProposal(numProposals: number, deltaLength: number): number {
    const groups = numProposals === 0 ? 1 : deltaLength / (4 * numProposals);
    if (numProposals === 0 ? deltaLength !== 0 : !Number.isInteger(groups) || groups < 1) {
      throw new RangeError(`DeltaXYWHBBoxCoder.decode: deltas of ${deltaLength} values do not split into [${numProposals}, 4 * K]`);
    }
    return groups;
  }
}

/** Centres `[N, 2]` and sizes `[N, 2]` of xyxy boxes `[N, 4]`. */
function centreSize(boxes: tf.Tensor2D): [tf.Tensor2D, tf.Tensor2D] {
  const [xy1, xy2] = tf.split(boxes, 2, 1) as [tf.Tensor2D, tf.Tensor2D];
  return [tf.mul(tf.add(xy1, xy2), 0.5), tf.sub(xy2, xy1)];
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}

function checkFour(path: string, name: string, value: readonly number[]): [number, number, number, number] {
  if (!Array.isArray(value) || value.length !== 4 || value.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
    throw new ConfigError(`${path}: '${name}' must be 4 finite numbers, got ${JSON.stringify(value)}`);
  }
  return [value[0]!, value[1]!, value[2]!, value[3]!];
}

BOX_CODERS.register('DeltaXYWHBBoxCoder', (options: DeltaXYWHBBoxCoderOptions, path) => new DeltaXYWHBBoxCoder(options, path));
