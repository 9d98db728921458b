/** Photometric transforms. */
import { checkOptionKeys } from '../../config/config.ts';
import { ConfigError } from '../../utils/errors.ts';
import { requireImage, type Sample, type Transform } from '../sample.ts';

/** ImageNet channel statistics in RGB order, on the 0..255 scale (the torchvision-pretrained backbones' input). */
export const IMAGENET_MEAN_RGB: readonly [number, number, number] = [123.675, 116.28, 103.53];
export const IMAGENET_STD_RGB: readonly [number, number, number] = [58.395, 57.12, 57.375];

export interface NormalizeOptions {
  /** Per-channel mean, in the output channel order (default: ImageNet, RGB). */
  mean?: readonly number[];
  /** Per-channel standard deviation, in the output channel order (default: ImageNet, RGB). */
  std?: readonly number[];
  /**
   * Output RGB (default true). Images are decoded as RGB, so true keeps the channel order
   * and false swaps it to BGR. MMDetection decodes to BGR, so its `to_rgb=False` (used for
   * Caffe-style backbones) also feeds BGR to the model.
   */
  toRgb?: boolean;
}

declare module '../../config/component_types.ts' {
  interface TransformTypes {
    Normalize: NormalizeOptions;
  }
}

function checkTriple(type: string, name: string, value: readonly number[]): [number, number, number] {
  if (!Array.isArray(value) || value.length !== 3 || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new ConfigError(`${type}: ${name} must be 3 finite numbers, got ${JSON.stringify(value)}`);
  }
  return [value[0]!, value[1]!, value[2]!];
}

/** Subtracts the mean and divides by the standard deviation per channel; the output is float32. */
export class Normalize implements Transform {
  readonly type = 'Normalize';
  private readonly mean: [number, number, number];
  private readonly std: [number, number, number];
  private readonly toRgb: boolean;

  constructor(options: NormalizeOptions = {}) {
    checkOptionKeys(this.type, options, ['mean', 'std', 'toRgb']);
    this.mean = checkTriple(this.type, 'mean', options.mean ?? IMAGENET_MEAN_RGB);
    this.std = checkTriple(this.type, 'std', options.std ?? IMAGENET_STD_RGB);
    if (this.std.some((value) => value === 0)) {
      throw new ConfigError(`${this.type}: std must not contain 0, got ${JSON.stringify(this.std)}`);
    }
    this.toRgb = options.toRgb ?? true;
  }

  apply(sample: Sample): Sample {
    const image = requireImage(sample, this.type);
    const source = image.data;
    const output = new Float32Array(source.length);
    // Channel c of the output reads input channel c (RGB), or 2 - c when converting to BGR.
    const order = this.toRgb ? [0, 1, 2] : [2, 1, 0];
    const inverseStd = this.std.map((value) => 1 / value);
    for (let c = 0; c < 3; c++) {
      const from = order[c]!;
      const mean = this.mean[c]!;
      const scale = inverseStd[c]!;
      for (let i = 0; i < source.length; i += 3) output[i + c] = (source[i + from]! - mean) * scale;
    }
    sample.image = { data: output, height: image.height, width: image.width };
    return sample;
  }
}
