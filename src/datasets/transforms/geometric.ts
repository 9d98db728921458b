/**
 * Geometric transforms: Resize, RandomFlip and Pad, with MMDetection 2.x semantics. Each
 * changes the image and its boxes together and records the change in the sample
 * (`imageShape`, `scaleFactor`, `flipped`, `padShape`).
 */
import { checkOptionKeys } from '../../config/config.ts';
import { ConfigError } from '../../utils/errors.ts';
import { randomInt, type RandomSource } from '../random.ts';
import { requireImage, type Sample, type SampleImage, type Transform, type TransformContext } from '../sample.ts';
import { resizeBilinear } from './bilinear.ts';

export type ScalePair = [number, number];

export interface ResizeOptions {
  /**
   * Target scale, or several for multi-scale training. With `keepRatio` each entry is a pair
   * of edge limits in either order, so [1333, 800] means long edge <= 1333 and short edge
   * <= 800. Without `keepRatio` an entry is the exact [width, height]. Default [1333, 800].
   */
  imgScale?: ScalePair | ScalePair[];
  /**
   * How to choose among several `imgScale` entries: 'range' draws the long and the short
   * edge uniformly between the two entries, 'value' picks one entry. Default 'range'.
   */
  multiscaleMode?: 'range' | 'value';
  /** Draw a ratio uniformly from [min, max) and multiply the single `imgScale` entry by it. */
  ratioRange?: [number, number];
  /** Keep the aspect ratio (default true). */
  keepRatio?: boolean;
  /** Clip boxes to the resized image (default true). */
  bboxClipBorder?: boolean;
}

export interface RandomFlipOptions {
  /** Probability of a flip (default 0.5). */
  flipRatio?: number;
  /** Only 'horizontal' is supported (default). */
  direction?: 'horizontal';
}

export interface PadOptions {
  /** Pad to this exact [height, width]; excludes `sizeDivisor`. */
  size?: ScalePair;
  /** Pad height and width up to multiples of this (default 32 when `size` is not given). */
  sizeDivisor?: number;
  /** Value of the padded pixels (default 0). */
  padVal?: number;
}

declare module '../../config/component_types.ts' {
  interface TransformTypes {
    Resize: ResizeOptions;
    RandomFlip: RandomFlipOptions;
    Pad: PadOptions;
  }
}

function isPositive(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}

function isScalePair(value: unknown): value is ScalePair {
  return Array.isArray(value) && value.length === 2 && value.every(isPositive);
}

/**
 * Returns the size that MMDetection's keep-ratio rescale gives: factor = min(long / max(h, w),
 * short / min(h, w)), new side = int(side * factor + 0.5). Sides are clamped to at least 1.
 */
export function rescaleSize(height: number, width: number, scale: ScalePair): { height: number; width: number } {
  const longEdge = Math.max(scale[0], scale[1]);
  const shortEdge = Math.min(scale[0], scale[1]);
  const factor = Math.min(longEdge / Math.max(height, width), shortEdge / Math.min(height, width));
  return {
    height: Math.max(1, Math.trunc(height * factor + 0.5)),
    width: Math.max(1, Math.trunc(width * factor + 0.5)),
  };
}

export class Resize implements Transform {
  readonly type = 'Resize';
  private readonly scales: ScalePair[];
  private readonly multiscaleMode: 'range' | 'value';
  private readonly ratioRange: [number, number] | undefined;
  private readonly keepRatio: boolean;
  private readonly bboxClipBorder: boolean;

  constructor(options: ResizeOptions = {}) {
    checkOptionKeys(this.type, options, ['imgScale', 'multiscaleMode', 'ratioRange', 'keepRatio', 'bboxClipBorder']);
    const imgScale = options.imgScale ?? [1333, 800];
    this.scales = isScalePair(imgScale) ? [imgScale] : (imgScale as ScalePair[]);
    if (!Array.isArray(this.scales) || this.scales.length === 0 || !this.scales.every(isScalePair)) {
      throw new ConfigError(`${this.type}: imgScale must be [a, b] or a list of [a, b] with positive numbers, got ${JSON.stringify(imgScale)}`);
    }
    this.multiscaleMode = options.multiscaleMode ?? 'range';
    if (this.multiscaleMode !== 'range' && this.multiscaleMode !== 'value') {
      throw new ConfigError(`${this.type}: multiscaleMode must be 'range' or 'value', got ${JSON.stringify(this.multiscaleMode)}`);
    }
    if (this.multiscaleMode === 'range' && this.scales.length > 2) {
      throw new ConfigError(`${this.type}: multiscaleMode 'range' needs 1 or 2 imgScale entries, got ${this.scales.length}`);
    }
    this.ratioRange = options.ratioRange;
    if (this.ratioRange !== undefined) {
      const [low, high] = this.ratioRange;
      if (!isPositive(low) || !isPositive(high) || low > high || this.scales.length !== 1) {
        throw new ConfigError(
          `${this.type}: ratioRange must be [min, max] with 0 < min <= max and one imgScale entry, got ${JSON.stringify(this.ratioRange)}`,
        );
      }
    }
    this.keepRatio = options.keepRatio ?? true;
    this.bboxClipBorder = options.bboxClipBorder ?? true;
  }

  /** Draws the scale for one sample, as MMDetection's Resize._random_scale. */
  chooseScale(random: RandomSource): ScalePair {
    const first = this.scales[0]!;
    if (this.ratioRange !== undefined) {
      const [low, high] = this.ratioRange;
      const ratio = random() * (high - low) + low;
      return [Math.trunc(first[0] * ratio), Math.trunc(first[1] * ratio)];
    }
    if (this.scales.length === 1) return first;
    if (this.multiscaleMode === 'value') return this.scales[randomInt(random, 0, this.scales.length - 1)]!;
    const longs = this.scales.map((scale) => Math.max(scale[0], scale[1]));
    const shorts = this.scales.map((scale) => Math.min(scale[0], scale[1]));
    return [
      randomInt(random, Math.min(...longs), Math.max(...longs)),
      randomInt(random, Math.min(...shorts), Math.max(...shorts)),
    ];
  }

  apply(sample: Sample, context: TransformContext): Sample {
    const image = requireImage(sample, this.type);
    const scale = this.chooseScale(context.random);
    const target = this.keepRatio
      ? rescaleSize(image.height, image.width, scale)
      : { width: Math.trunc(scale[0]), height: Math.trunc(scale[1]) };
    sample.image = resizeBilinear(image, target.height, target.width);

    // Boxes use the actual per-axis factors, which differ slightly from the rescale factor
    // because the new sides are rounded.
    const scaleX = target.width / image.width;
    const scaleY = target.height / image.height;
    for (const boxes of [sample.boxes, sample.ignoredBoxes]) {
      if (boxes === undefined) continue;
      for (let i = 0; i < boxes.length; i += 4) {
        boxes[i] = boxes[i]! * scaleX;
        boxes[i + 1] = boxes[i + 1]! * scaleY;
        boxes[i + 2] = boxes[i + 2]! * scaleX;
        boxes[i + 3] = boxes[i + 3]! * scaleY;
        if (this.bboxClipBorder) {
          boxes[i] = Math.min(Math.max(boxes[i]!, 0), target.width);
          boxes[i + 1] = Math.min(Math.max(boxes[i + 1]!, 0), target.height);
          boxes[i + 2] = Math.min(Math.max(boxes[i + 2]!, 0), target.width);
          boxes[i + 3] = Math.min(Math.max(boxes[i + 3]!, 0), target.height);
        }
      }
    }
    sample.imageShape = [target.height, target.width];
    sample.padShape = [target.height, target.width];
    sample.scaleFactor = [sample.scaleFactor[0] * scaleX, sample.scaleFactor[1] * scaleY];
    return sample;
  }
}

/** Mirrors an HWC image left to right. */
export function flipImageHorizontal(image: SampleImage): SampleImage {
  const { height, width } = image;
  const flipped = image.data instanceof Uint8Array ? new Uint8Array(image.data.length) : new Float32Array(image.data.length);
  for (let y = 0; y < height; y++) {
    const row = y * width * 3;
    for (let x = 0; x < width; x++) {
      const from = row + x * 3;
      const to = row + (width - 1 - x) * 3;
      flipped[to] = image.data[from]!;
      flipped[to + 1] = image.data[from + 1]!;
      flipped[to + 2] = image.data[from + 2]!;
    }
  }
  return { data: flipped, height, width };
}

export class RandomFlip implements Transform {
  readonly type = 'RandomFlip';
  private readonly flipRatio: number;

  constructor(options: RandomFlipOptions = {}) {
    checkOptionKeys(this.type, options, ['flipRatio', 'direction']);
    this.flipRatio = options.flipRatio ?? 0.5;
    if (typeof this.flipRatio !== 'number' || !(this.flipRatio >= 0 && this.flipRatio <= 1)) {
      throw new ConfigError(`${this.type}: flipRatio must be a number in [0, 1], got ${JSON.stringify(options.flipRatio)}`);
    }
    const direction = options.direction ?? 'horizontal';
    if (direction !== 'horizontal') {
      // ImageMeta records one `flipped` flag, which the detectors read as a horizontal flip.
      throw new ConfigError(`${this.type}: direction must be 'horizontal' (the only one supported), got ${JSON.stringify(direction)}`);
    }
  }

  apply(sample: Sample, context: TransformContext): Sample {
    if (!(context.random() < this.flipRatio)) return sample;
    return RandomFlip.flip(sample, this.type);
  }

  /** Flips the sample's image and boxes horizontally and toggles `flipped`. */
  static flip(sample: Sample, transformType = 'RandomFlip'): Sample {
    const image = requireImage(sample, transformType);
    const imageShape = sample.imageShape ?? [image.height, image.width];
    if (imageShape[0] !== image.height || imageShape[1] !== image.width) {
      throw new ConfigError(
        `${transformType}: the image of ${sample.filePath} is already padded (${image.height} x ${image.width}, ` +
          `content ${imageShape[0]} x ${imageShape[1]}); put RandomFlip before Pad`,
      );
    }
    sample.image = flipImageHorizontal(image);
    const width = image.width;
    for (const boxes of [sample.boxes, sample.ignoredBoxes]) {
      if (boxes === undefined) continue;
      for (let i = 0; i < boxes.length; i += 4) {
        const x1 = boxes[i]!;
        boxes[i] = width - boxes[i + 2]!;
        boxes[i + 2] = width - x1;
      }
    }
    sample.flipped = !sample.flipped;
    return sample;
  }
}

/** Returns `image` padded at the bottom and right to `height` x `width` with `value`. */
export function padImage(image: SampleImage, height: number, width: number, value: number): SampleImage {
  if (height < image.height || width < image.width) {
    throw new RangeError(`padImage: target ${height} x ${width} is smaller than the image ${image.height} x ${image.width}`);
  }
  if (height === image.height && width === image.width) return image;
  const padded = image.data instanceof Uint8Array ? new Uint8Array(height * width * 3) : new Float32Array(height * width * 3);
  if (value !== 0) padded.fill(value);
  const rowLength = image.width * 3;
  for (let y = 0; y < image.height; y++) {
    padded.set(image.data.subarray(y * rowLength, (y + 1) * rowLength), y * width * 3);
  }
  return { data: padded, height, width };
}

export class Pad implements Transform {
  readonly type = 'Pad';
  private readonly size: ScalePair | undefined;
  private readonly sizeDivisor: number | undefined;
  private readonly padVal: number;

  constructor(options: PadOptions = {}) {
    checkOptionKeys(this.type, options, ['size', 'sizeDivisor', 'padVal']);
    if (options.size !== undefined && options.sizeDivisor !== undefined) {
      throw new ConfigError(`${this.type}: give either size or sizeDivisor, not both`);
    }
    if (options.size !== undefined && !(isScalePair(options.size) && options.size.every(Number.isInteger))) {
      throw new ConfigError(`${this.type}: size must be [height, width] with positive integers, got ${JSON.stringify(options.size)}`);
    }
    this.size = options.size;
    this.sizeDivisor = options.size === undefined ? (options.sizeDivisor ?? 32) : undefined;
    if (this.sizeDivisor !== undefined && !(Number.isInteger(this.sizeDivisor) && this.sizeDivisor > 0)) {
      throw new ConfigError(`${this.type}: sizeDivisor must be a positive integer, got ${JSON.stringify(options.sizeDivisor)}`);
    }
    this.padVal = options.padVal ?? 0;
  }

  apply(sample: Sample): Sample {
    const image = requireImage(sample, this.type);
    let height: number;
    let width: number;
    if (this.size !== undefined) {
      [height, width] = this.size;
      if (height < image.height || width < image.width) {
        throw new ConfigError(
          `${this.type}: size ${height} x ${width} is smaller than image ${sample.filePath} (${image.height} x ${image.width})`,
        );
      }
    } else {
      const divisor = this.sizeDivisor!;
      height = Math.ceil(image.height / divisor) * divisor;
      width = Math.ceil(image.width / divisor) * divisor;
    }
    sample.image = padImage(image, height, width, this.padVal);
    sample.padShape = [height, width];
    return sample;
  }
}
