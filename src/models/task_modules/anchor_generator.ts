import { checkOptionKeys } from '../../config/config.ts';
import { ANCHOR_GENERATORS } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import type { PriorGenerator } from './types.ts';

/**
 * MMDetection 2.x `AnchorGenerator`. For a level with base size b, each ratio r and scale s
 * give an anchor of width `b * s / sqrt(r)` and height `b * s * sqrt(r)`, centred at
 * `centerOffset * b`. The default offset is 0, so the first anchor is centred on the image's
 * top-left corner, not on the centre of the first cell. Anchor a of cell (y, x) is row
 * `(y * W + x) * A + a` of the level's grid, shifted by `(x * strideX, y * strideY)`.
 */

export interface AnchorGeneratorOptions {
  /** Stride of each level in pixels: one number, or `[strideX, strideY]`. */
  strides: ReadonlyArray<number | readonly [number, number]>;
  /** Height / width ratios. */
  ratios: readonly number[];
  /** Anchor scales relative to the base size. Give these or `octaveBaseScale` with `scalesPerOctave`. */
  scales?: readonly number[];
  /** Base size of each level. Defaults to the stride (the smaller one of a pair). */
  baseSizes?: readonly number[];
  /** Order of the anchors of a cell: ratio outer and scale inner when true (MMDetection's default). */
  scaleMajor?: boolean;
  /** RetinaNet's scales: `octaveBaseScale * 2^(i / scalesPerOctave)` for i in [0, scalesPerOctave). */
  octaveBaseScale?: number;
  scalesPerOctave?: number;
  /** Anchor centre within a cell as a fraction of the base size, in [0, 1]. */
  centerOffset?: number;
}

declare module '../../config/component_types.ts' {
  interface AnchorGeneratorTypes {
    AnchorGenerator: AnchorGeneratorOptions;
  }
}

const OPTION_KEYS = ['strides', 'ratios', 'scales', 'baseSizes', 'scaleMajor', 'octaveBaseScale', 'scalesPerOctave', 'centerOffset'] as const;

/** Anchors of every feature-map level, computed on demand and cached by feature-map size. */
export class AnchorGenerator implements PriorGenerator {
  readonly strides: ReadonlyArray<readonly [number, number]>;
  readonly ratios: readonly number[];
  readonly scales: readonly number[];
  readonly baseSizes: readonly number[];
  readonly scaleMajor: boolean;
  readonly centerOffset: number;
  /** Base anchors of each level, `[A, 4]` flat, centred at `centerOffset * baseSize`. */
  readonly baseAnchors: readonly Float64Array[];
  private readonly gridCache = new Map<string, Float32Array>();

  constructor(options: AnchorGeneratorOptions, path = 'AnchorGenerator') {
    checkOptionKeys(path, options, OPTION_KEYS);
    if (!Array.isArray(options.strides) || options.strides.length === 0) {
      throw new ConfigError(`${path}: 'strides' must be a non-empty list, got ${JSON.stringify(options.strides)}`);
    }
    this.strides = options.strides.map((stride): readonly [number, number] => (typeof stride === 'number' ? [stride, stride] : [stride[0], stride[1]]));
    for (const [sx, sy] of this.strides) {
      if (!(sx > 0 && sy > 0)) throw new ConfigError(`${path}: strides must be positive, got ${JSON.stringify(options.strides)}`);
    }
    if (!Array.isArray(options.ratios) || options.ratios.length === 0 || options.ratios.some((r) => !(r > 0))) {
      throw new ConfigError(`${path}: 'ratios' must be a non-empty list of positive numbers, got ${JSON.stringify(options.ratios)}`);
    }
    this.ratios = [...options.ratios];
    this.scales = resolveScales(options, path);
    this.baseSizes = options.baseSizes === undefined ? this.strides.map(([sx, sy]) => Math.min(sx, sy)) : [...options.baseSizes];
    if (this.baseSizes.length !== this.strides.length) {
      throw new ConfigError(`${path}: ${this.baseSizes.length} baseSizes for ${this.strides.length} strides, expected one per level`);
    }
    this.scaleMajor = options.scaleMajor ?? true;
    this.centerOffset = options.centerOffset ?? 0;
    if (!(this.centerOffset >= 0 && this.centerOffset <= 1)) {
      throw new ConfigError(`${path}: 'centerOffset' must be in [0, 1], got ${this.centerOffset}`);
    }
    this.baseAnchors = this.baseSizes.map((size) => this.levelBaseAnchors(size));
  }

  get numLevels(): number {
    return this.strides.length;
  }

  /** Anchors per cell at each level. */
  get numBaseAnchors(): number[] {
    return this.baseAnchors.map((anchors) => anchors.length / 4);
  }

  private levelBaseAnchors(baseSize: number): Float64Array {
    const center = this.centerOffset * baseSize;
    const anchors = new Float64Array(4 * this.ratios.length * this.scales.length);
    let a = 0;
    const push = (ratio: number, scale: number) => {
      const hRatio = Math.sqrt(ratio);
      const w = baseSize * (1 / hRatio) * scale;
      const h = baseSize * hRatio * scale;
      anchors.set([center - 0.5 * w, center - 0.5 * h, center + 0.5 * w, center + 0.5 * h], 4 * a++);
    };
    if (this.scaleMajor) {
      for (const ratio of this.ratios) for (const scale of this.scales) push(ratio, scale);
    } else {
      for (const scale of this.scales) for (const ratio of this.ratios) push(ratio, scale);
    }
    return anchors;
  }

  /**
   * Returns the anchors of each level for feature maps of the given `[H, W]` sizes, as flat
   * `[H * W * A, 4]` arrays. The arrays are cached and shared between calls: do not modify them.
   */
  gridAnchors(featmapSizes: ReadonlyArray<readonly [number, number]>): Float32Array[] {
    this.checkLevels(featmapSizes);
    return featmapSizes.map(([h, w], level) => {
      const key = `${level}:${h}x${w}`;
      let anchors = this.gridCache.get(key);
      if (anchors === undefined) {
        anchors = this.levelGridAnchors(level, h, w);
        this.gridCache.set(key, anchors);
      }
      return anchors;
    });
  }

  private levelGridAnchors(level: number, height: number, width: number): Float32Array {
    const base = this.baseAnchors[level]!;
    const numBase = base.length / 4;
    const [strideX, strideY] = this.strides[level]!;
    const anchors = new Float32Array(height * width * numBase * 4);
    let o = 0;
    for (let y = 0; y < height; y++) {
      const shiftY = y * strideY;
      for (let x = 0; x < width; x++) {
        const shiftX = x * strideX;
        for (let a = 0; a < numBase; a++) {
          anchors[o++] = base[4 * a]! + shiftX;
          anchors[o++] = base[4 * a + 1]! + shiftY;
          anchors[o++] = base[4 * a + 2]! + shiftX;
          anchors[o++] = base[4 * a + 3]! + shiftY;
        }
      }
    }
    return anchors;
  }

  /**
   * Returns per-level flags (1 valid, 0 not) of the anchors whose cell lies within the
   * `padShape = [height, width]` of one image, as MMDetection's `valid_flags`: a cell is valid
   * when x < ceil(width / strideX) and y < ceil(height / strideY). Cells of a batch tensor
   * padded beyond this image are invalid, so training ignores their anchors.
   */
  validFlags(featmapSizes: ReadonlyArray<readonly [number, number]>, padShape: readonly [number, number]): Uint8Array[] {
    this.checkLevels(featmapSizes);
    return featmapSizes.map(([h, w], level) => {
      const [strideX, strideY] = this.strides[level]!;
      const validH = Math.min(Math.ceil(padShape[0] / strideY), h);
      const validW = Math.min(Math.ceil(padShape[1] / strideX), w);
      const numBase = this.baseAnchors[level]!.length / 4;
      const flags = new Uint8Array(h * w * numBase);
      for (let y = 0; y < validH; y++) flags.fill(1, y * w * numBase, (y * w + validW) * numBase);
      return flags;
    });
  }

  private checkLevels(featmapSizes: ReadonlyArray<readonly [number, number]>): void {
    if (featmapSizes.length !== this.numLevels) {
      throw new RangeError(`AnchorGenerator: got ${featmapSizes.length} feature-map sizes for ${this.numLevels} levels (strides ${JSON.stringify(this.strides)})`);
    }
    for (const size of featmapSizes) {
      if (!(Number.isInteger(size[0]) && Number.isInteger(size[1]) && size[0] >= 0 && size[1] >= 0)) {
        throw new RangeError(`AnchorGenerator: feature-map sizes must be [H, W] non-negative integers, got ${JSON.stringify(size)}`);
      }
    }
  }
}

function resolveScales(options: AnchorGeneratorOptions, path: string): number[] {
  const hasOctave = options.octaveBaseScale !== undefined || options.scalesPerOctave !== undefined;
  if (options.scales !== undefined) {
    if (hasOctave) {
      throw new ConfigError(`${path}: give either 'scales' or 'octaveBaseScale' with 'scalesPerOctave', not both`);
    }
    if (!Array.isArray(options.scales) || options.scales.length === 0 || options.scales.some((s) => !(s > 0))) {
      throw new ConfigError(`${path}: 'scales' must be a non-empty list of positive numbers, got ${JSON.stringify(options.scales)}`);
    }
    return [...options.scales];
  }
  const base = options.octaveBaseScale;
  const perOctave = options.scalesPerOctave;
  if (base === undefined || perOctave === undefined) {
    throw new ConfigError(`${path}: missing scales. Give 'scales' or both 'octaveBaseScale' and 'scalesPerOctave'`);
  }
  if (!(base > 0) || !(Number.isInteger(perOctave) && perOctave > 0)) {
    throw new ConfigError(`${path}: octaveBaseScale must be positive and scalesPerOctave a positive integer, got ${base} and ${perOctave}`);
  }
  return Array.from({ length: perOctave }, (_, i) => 2 ** (i / perOctave) * base);
}

ANCHOR_GENERATORS.register('AnchorGenerator', (options: AnchorGeneratorOptions, path) => new AnchorGenerator(options, path));
