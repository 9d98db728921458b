import * as tf from '@tensorflow/tfjs-core';

/**
 * Batch and group normalisation in training mode, with their gradients written in closed form.
 *
 * Autodiff through tf.moments and tf.batchNorm records dozens of ops per layer, most of them
 * full-size element-wise ops and reductions. Here the forward pass reads or writes full-size
 * tensors in six ops and the backward pass in seven. Both layers are one computation on x seen
 * as [N, L, C], with statistics per image and channel group over the L positions and the
 * channels of the group:
 *   d = x - mean,  rstd = 1 / sqrt(var + eps),  y = d * rstd * weight + bias,
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  where g = dy * weight, xhat = d * rstd
 * and the means run over the group. Batch norm is the case of one image (x reshaped to
 * [1, N*H*W, C]) with one channel per group.
 */

/** Batch statistics of a normalisation, for the running averages of batch norm. */
export interface NormalizationStatistics {
  /** `[N, G]` means. */
  mean: tf.Tensor2D;
  /** `[N, G]` biased variances. */
  variance: tf.Tensor2D;
  /** Elements per statistic: L * C / G. */
  count: number;
}

/**
 * Batch-normalises x `[N, H, W, C]` with the batch statistics over N, H and W, then applies
 * the per-channel `weight` and `bias`. Returns the output and the `[C]` batch mean and biased
 * variance, which the caller disposes.
 */
export function batchNormTraining(
  x: tf.Tensor4D,
  weight: tf.Tensor1D,
  bias: tf.Tensor1D,
  eps: number,
): { output: tf.Tensor4D; mean: tf.Tensor1D; variance: tf.Tensor1D; count: number } {
  const [n, h, w, c] = x.shape;
  let statistics: NormalizationStatistics | undefined;
  const output = tf.tidy(() => {
    const flat = tf.reshape(x, [1, n * h * w, c]) as tf.Tensor3D;
    const normalised = normalizeGroups(flat, c, weight, bias, eps, (s) => (statistics = s));
    return tf.reshape(normalised, x.shape) as tf.Tensor4D;
  });
  const { mean, variance, count } = statistics!;
  const result = {
    output,
    mean: tf.reshape(mean, [c]) as tf.Tensor1D,
    variance: tf.reshape(variance, [c]) as tf.Tensor1D,
    count,
  };
  tf.dispose([mean, variance]);
  return result;
}

/**
 * Group-normalises x `[N, H, W, C]` over H, W and each of `numGroups` groups of adjacent
 * channels, per image, then applies the per-channel `weight` and `bias`.
 */
export function groupNorm(x: tf.Tensor4D, numGroups: number, weight: tf.Tensor1D, bias: tf.Tensor1D, eps: number): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  return tf.tidy(() => {
    let statistics: NormalizationStatistics | undefined;
    const grouped = tf.reshape(x, [n, h * w, c]) as tf.Tensor3D;
    const normalised = normalizeGroups(grouped, numGroups, weight, bias, eps, (s) => (statistics = s));
    tf.dispose([statistics!.mean, statistics!.variance]);
    return tf.reshape(normalised, x.shape) as tf.Tensor4D;
  });
}

/**
 * Normalises x `[N, L, C]` per image and channel group as the file header describes, and
 * passes the batch statistics, as kept tensors, to `onStatistics`.
 */
function normalizeGroups(
  x: tf.Tensor3D,
  numGroups: number,
  weight: tf.Tensor1D,
  bias: tf.Tensor1D,
  eps: number,
  onStatistics: (statistics: NormalizationStatistics) => void,
): tf.Tensor3D {
  const [n, length, channels] = x.shape;
  if (channels % numGroups !== 0) {
    throw new Error(`normalizeGroups: ${channels} channels cannot form ${numGroups} equal groups`);
  }
  const count = length * (channels / numGroups);
  const groups = new ChannelGroups(n, numGroups, channels);

  const normalize = tf.customGrad((input, scale, shift, save) => {
    const xs = input as tf.Tensor3D;
    const gamma = scale as tf.Tensor1D;
    const beta = shift as tf.Tensor1D;

    const mean = tf.div(groups.sum(tf.sum(xs, 1)), count) as tf.Tensor2D;
    const centred = tf.sub(xs, groups.expand(mean));
    const variance = tf.div(groups.sum(tf.sum(tf.square(centred), 1)), count) as tf.Tensor2D;
    const rstd = groups.expand(tf.rsqrt(tf.add(variance, eps)));
    const factor = tf.mul(rstd, gamma);
    const value = tf.add(tf.mul(centred, factor), beta) as tf.Tensor3D;
    onStatistics({ mean: tf.keep(mean), variance: tf.keep(variance), count });
    (save as (tensors: tf.Tensor[]) => void)([centred, rstd, factor, gamma]);

    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const [centredSaved, rstdSaved, factorSaved, gammaSaved] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor1D];
      // Per image and channel: sums of dy and of dy * xhat over the L positions.
      const dySum = tf.sum(dy, 1) as tf.Tensor2D;
      const dyXhatSum = tf.mul(tf.sum(tf.mul(dy, centredSaved), 1), tf.reshape(rstdSaved, [n, channels])) as tf.Tensor2D;
      const dBias = tf.sum(dySum, 0);
      const dWeight = tf.sum(dyXhatSum, 0);
      // Group means of g = dy * weight and of g * xhat.
      const gMean = groups.expand(tf.div(groups.sum(tf.mul(dySum, gammaSaved)), count));
      const gXhatMean = groups.expand(tf.div(groups.sum(tf.mul(dyXhatSum, gammaSaved)), count));
      // dx = dy * rstd * weight - rstd^2 * mean(g * xhat) * d - rstd * mean(g).
      const centredFactor = tf.neg(tf.mul(tf.square(rstdSaved), gXhatMean));
      const offset = tf.neg(tf.mul(rstdSaved, gMean));
      const dx = tf.add(tf.mul(dy, factorSaved), tf.add(tf.mul(centredSaved, centredFactor), offset));
      return [dx, dWeight, dBias];
    };
    return { value, gradFunc };
  });
  return normalize(x, weight, bias) as tf.Tensor3D;
}

/** Sums over and broadcasts across the channel groups of `[N, C]` per-channel values. */
class ChannelGroups {
  private readonly groupSize: number;

  constructor(
    private readonly images: number,
    private readonly numGroups: number,
    private readonly channels: number,
  ) {
    this.groupSize = channels / numGroups;
  }

  /** Returns the `[N, G]` sums of `[N, C]` per-channel values over each group. */
  sum(perChannel: tf.Tensor): tf.Tensor2D {
    if (this.groupSize === 1) return perChannel as tf.Tensor2D;
    return tf.sum(tf.reshape(perChannel, [this.images, this.numGroups, this.groupSize]), 2) as tf.Tensor2D;
  }

  /** Returns `[N, G]` per-group values repeated over each group's channels, as `[N, 1, C]`. */
  expand(perGroup: tf.Tensor): tf.Tensor3D {
    const column = tf.reshape(perGroup, [this.images, this.numGroups, 1]);
    const repeated = this.groupSize === 1 ? column : tf.tile(column, [1, 1, this.groupSize]);
    return tf.reshape(repeated, [this.images, 1, this.channels]) as tf.Tensor3D;
  }
}
