import * as tf from '@tensorflow/tfjs-core';

import { BatchNorm2d } from './layers.ts';

/**
 * Synchronized batch normalisation, as MMDetection's `norm_cfg=dict(type='SyncBN')` (PyTorch's
 * SyncBatchNorm): in data-parallel training, the batch statistics of each layer call run over
 * the images of every replica, so N replicas with one image each normalise as one process with
 * N images would.
 *
 * A replica takes part through a BatchNormSyncGroup, which the data-parallel worker installs
 * with `setBatchNormSyncGroup` while it computes gradients. Without an installed group (one
 * process), and in inference mode or with `useRunningStats`, SyncBatchNorm2d is BatchNorm2d,
 * bit for bit.
 *
 * Forward, with statistics per channel: each replica r sends its element count m_r, its sum s_r
 * and its centred sum of squares M2_r = sum((x - s_r / m_r)^2). With M = sum(m_r), the global
 * mean is sum(s_r) / M and the global biased variance is
 * sum(M2_r + m_r * (s_r / m_r - mean)^2) / M, the pairwise combination of variances. A plain
 * sum of squares, sum(x^2) / M - mean^2, would lose most digits in float32 when the mean is
 * large against the standard deviation.
 *
 * Backward, with xhat = (x - mean) * rstd and g = dy * weight:
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
 * where the two means run over the elements of every replica, so each replica sends its
 * per-channel sums of dy and dy * xhat. The gradients of weight and bias stay the replica's own
 * sums, because the data-parallel trainer averages parameter gradients over the replicas
 * afterwards, as DDP does.
 *
 * The sums over the replicas run in float64 in replica order, so every replica gets the same
 * statistics bit for bit.
 */

/** Pass of a layer call that exchanges statistics: forward statistics or backward sums. */
export type SyncPhase = 'forward' | 'backward';

/** The channel through which data-parallel replicas exchange per-channel statistics. */
export interface BatchNormSyncGroup {
  /**
   * Publishes `values`, this replica's statistics of one call of `layer`, and returns the
   * values of every replica taking part in the step, in replica order, once all of them have
   * published. Every replica must make the same sequence of calls. The returned arrays stay
   * valid until the next call.
   */
  allGather(layer: SyncBatchNorm2d, phase: SyncPhase, values: Float64Array): readonly Float64Array[];
}

let installedGroup: BatchNormSyncGroup | undefined;

/**
 * Installs `group` for every SyncBatchNorm2d of this thread (undefined removes it) and returns
 * the group it replaces.
 */
export function setBatchNormSyncGroup(group: BatchNormSyncGroup | undefined): BatchNormSyncGroup | undefined {
  const previous = installedGroup;
  installedGroup = group;
  return previous;
}

/**
 * Batch normalisation whose training statistics run over every data-parallel replica (see the
 * file comment). Parameters and buffers have BatchNorm2d's names, so checkpoints of either load
 * into the other.
 */
export class SyncBatchNorm2d extends BatchNorm2d {
  protected override forwardTraining(x: tf.Tensor4D): tf.Tensor4D {
    const group = installedGroup;
    if (group === undefined) return super.forwardTraining(x);
    const exchange = (phase: SyncPhase, values: Float64Array) => group.allGather(this, phase, values);
    const { output, mean, variance, count } = syncBatchNormTraining(x, this.weight as tf.Tensor1D, this.bias as tf.Tensor1D, this.eps, exchange);
    const meanTensor = tf.tensor1d(Float32Array.from(mean));
    const varianceTensor = tf.tensor1d(Float32Array.from(variance));
    this.updateRunningStats(meanTensor, varianceTensor, count);
    tf.dispose([meanTensor, varianceTensor]);
    return output;
  }
}

/** Exchanges one replica's per-channel values for those of every replica, in replica order. */
export type StatisticsExchange = (phase: SyncPhase, values: Float64Array) => readonly Float64Array[];

/**
 * Batch-normalises x `[N, H, W, C]` with statistics over the elements of every replica, which
 * `exchange` gathers, then applies the per-channel `weight` and `bias`. Returns the output and
 * the global mean, biased variance and element count, for the running statistics.
 */
export function syncBatchNormTraining(
  x: tf.Tensor4D,
  weight: tf.Tensor1D,
  bias: tf.Tensor1D,
  eps: number,
  exchange: StatisticsExchange,
): { output: tf.Tensor4D; mean: Float64Array; variance: Float64Array; count: number } {
  const [n, h, w, channels] = x.shape;
  let statistics: GlobalStatistics | undefined;

  const normalize = tf.customGrad((input, scale, shift, save) => {
    const flat = tf.reshape(input as tf.Tensor4D, [n * h * w, channels]) as tf.Tensor2D;
    const gamma = scale as tf.Tensor1D;
    const beta = shift as tf.Tensor1D;

    statistics = combineForwardStatistics(exchange('forward', localStatistics(flat)), channels);
    const centred = tf.sub(flat, tf.tensor1d(Float32Array.from(statistics.mean)));
    const rstd = tf.tensor1d(Float32Array.from(statistics.variance, (variance) => 1 / Math.sqrt(variance + eps)));
    const factor = tf.mul(rstd, gamma);
    const value = tf.reshape(tf.add(tf.mul(centred, factor), beta), [n, h, w, channels]);
    const count = statistics.count;
    (save as (tensors: tf.Tensor[]) => void)([centred, rstd, factor, gamma]);

    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const [centredSaved, rstdSaved, factorSaved, gammaSaved] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
      const dyFlat = tf.reshape(dy, [n * h * w, channels]) as tf.Tensor2D;
      // This replica's sums of dy and of dy * xhat per channel, which are also its gradients of bias and weight.
      const dBias = tf.sum(dyFlat, 0) as tf.Tensor1D;
      const dWeight = tf.mul(tf.sum(tf.mul(dyFlat, centredSaved), 0), rstdSaved) as tf.Tensor1D;
      const sums = sumOverReplicas(exchange('backward', readValues([dBias, dWeight])), 2 * channels);
      // Means over every replica's elements of g = dy * weight and of g * xhat.
      const gMean = tf.mul(tf.tensor1d(Float32Array.from(sums.subarray(0, channels), (sum) => sum / count)), gammaSaved);
      const gXhatMean = tf.mul(tf.tensor1d(Float32Array.from(sums.subarray(channels), (sum) => sum / count)), gammaSaved);
      // dx = dy * rstd * weight - rstd^2 * mean(g * xhat) * (x - mean) - rstd * mean(g).
      const centredFactor = tf.neg(tf.mul(tf.square(rstdSaved), gXhatMean));
      const offset = tf.neg(tf.mul(rstdSaved, gMean));
      const dx = tf.add(tf.mul(dyFlat, factorSaved), tf.add(tf.mul(centredSaved, centredFactor), offset));
      return [tf.reshape(dx, [n, h, w, channels]), dWeight, dBias];
    };
    return { value, gradFunc };
  });

  const output = normalize(x, weight, bias) as tf.Tensor4D;
  const { mean, variance, count } = statistics!;
  return { output, mean, variance, count };
}

interface GlobalStatistics {
  mean: Float64Array;
  /** Biased variance. */
  variance: Float64Array;
  /** Elements per channel over every replica. */
  count: number;
}

/**
 * Returns this replica's forward statistics of x `[L, C]` as [count, sums (C), centred sums of
 * squares (C)]. The centring uses the float32 mean that the subtraction actually used, and
 * the result is corrected to the exact local mean: sum((x - a)^2) - m * (mean - a)^2.
 */
function localStatistics(flat: tf.Tensor2D): Float64Array {
  const [count, channels] = flat.shape;
  const packed = tf.tidy(() => {
    const sum = tf.sum(flat, 0);
    const shift = tf.div(sum, count);
    const squares = tf.sum(tf.square(tf.sub(flat, shift)), 0);
    return tf.concat([sum, shift, squares]);
  });
  const read = packed.dataSync();
  packed.dispose();
  const values = new Float64Array(1 + 2 * channels);
  values[0] = count;
  for (let k = 0; k < channels; k++) {
    const sum = read[k]!;
    const correction = sum / count - read[channels + k]!;
    values[1 + k] = sum;
    values[1 + channels + k] = read[2 * channels + k]! - count * correction * correction;
  }
  return values;
}

/** Combines the forward statistics of every replica (see `localStatistics`) into global ones. */
function combineForwardStatistics(replicas: readonly Float64Array[], channels: number): GlobalStatistics {
  let count = 0;
  for (const values of replicas) count += values[0]!;
  const mean = new Float64Array(channels);
  const variance = new Float64Array(channels);
  for (let k = 0; k < channels; k++) {
    let sum = 0;
    for (const values of replicas) sum += values[1 + k]!;
    mean[k] = sum / count;
  }
  for (let k = 0; k < channels; k++) {
    let squares = 0;
    for (const values of replicas) {
      const replicaCount = values[0]!;
      const offset = values[1 + k]! / replicaCount - mean[k]!;
      squares += values[1 + channels + k]! + replicaCount * offset * offset;
    }
    variance[k] = Math.max(squares / count, 0);
  }
  return { mean, variance, count };
}

/** Returns the element-wise sums of the first `length` values of every replica, in replica order. */
function sumOverReplicas(replicas: readonly Float64Array[], length: number): Float64Array {
  const sums = new Float64Array(length);
  for (const values of replicas) {
    for (let k = 0; k < length; k++) sums[k] += values[k]!;
  }
  return sums;
}

/** Reads 1-D tensors into one float64 array, in order. */
function readValues(tensors: tf.Tensor1D[]): Float64Array {
  const packed = tf.concat(tensors);
  const values = Float64Array.from(packed.dataSync());
  packed.dispose();
  return values;
}
