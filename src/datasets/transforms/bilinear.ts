/**
 * Bilinear image resampling with the semantics of OpenCV's `cv2.resize(..., INTER_LINEAR)`,
 * which mmcv 1.x uses for `Resize` by default:
 * - pixel centres are aligned, so source x = (x' + 0.5) * (srcWidth / dstWidth) - 0.5;
 * - coordinates outside the image are clamped to the edge pixels;
 * - there is no low-pass filter when shrinking, so each output pixel reads 2 x 2 source pixels.
 *
 * For uint8 images the weights are 11-bit fixed point, and the vertical pass rounds as
 * OpenCV's SIMD code does on x86-64. A 640 x 422 COCO photo resized to 11 sizes, from 1 x 1
 * to 2000 x 2 and including the exact 2x shrink that OpenCV runs as INTER_AREA, came out equal
 * bit for bit to OpenCV 4.6.0's output. `test/fixtures/datasets/bilinear_reference.json`
 * contains smaller cases of the same check. Float32 images use float weights and agree with
 * OpenCV to about 1e-6.
 */
import type { SampleImage } from '../sample.ts';

const CHANNELS = 3;
const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS;

/** Source index pairs and weights along one axis. */
interface AxisTaps {
  first: Int32Array;
  second: Int32Array;
  /** Weight of `second`; `first` gets 1 - weight. */
  weight: Float32Array;
}

/** Rounds half to even, like OpenCV's cvRound. */
function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Computes the source taps along one axis as OpenCV does. Along x, OpenCV moves a position
 * outside the image onto the edge pixel with weight 0. Along y it keeps the fraction and
 * clamps only the row indices, which changes the fixed-point rounding of the edge rows.
 */
function computeTaps(sourceSize: number, targetSize: number, clampFraction: boolean): AxisTaps {
  // OpenCV stores the inverse ratio and computes positions in double, then casts them to float.
  const scale = 1 / (targetSize / sourceSize);
  const first = new Int32Array(targetSize);
  const second = new Int32Array(targetSize);
  const weight = new Float32Array(targetSize);
  for (let i = 0; i < targetSize; i++) {
    const position = Math.fround((i + 0.5) * scale - 0.5);
    let index = Math.floor(position);
    let fraction = Math.fround(position - index);
    if (clampFraction && index < 0) {
      index = 0;
      fraction = 0;
    }
    if (clampFraction && index >= sourceSize - 1) {
      index = sourceSize - 1;
      fraction = 0;
    }
    first[i] = Math.min(Math.max(index, 0), sourceSize - 1);
    second[i] = Math.min(Math.max(index + 1, 0), sourceSize - 1);
    weight[i] = fraction;
  }
  return { first, second, weight };
}

/** Fixed-point weights of `first` and `second`: round(w * 2048) of the float weights. */
function fixedPointWeights(weight: number): [number, number] {
  return [roundHalfEven(Math.fround(1 - weight) * COEF_SCALE), roundHalfEven(weight * COEF_SCALE)];
}

/** Returns `image` resampled to `height` x `width`; a uint8 image stays uint8, a float32 image stays float32. */
export function resizeBilinear(image: SampleImage, height: number, width: number): SampleImage {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height <= 0 || width <= 0) {
    throw new RangeError(`resizeBilinear: target size must be positive integers, got ${height} x ${width}`);
  }
  if (image.data.length !== image.height * image.width * CHANNELS) {
    throw new RangeError(
      `resizeBilinear: expected ${image.height} x ${image.width} x 3 values, got ${image.data.length}`,
    );
  }
  if (height === image.height && width === image.width) {
    return { data: image.data.slice(), height, width };
  }
  const columns = computeTaps(image.width, width, true);
  const rows = computeTaps(image.height, height, false);
  return image.data instanceof Uint8Array
    ? resizeUint8(image.data, image.width, columns, rows, height, width)
    : resizeFloat32(image.data, image.width, columns, rows, height, width);
}

function resizeUint8(
  source: Uint8Array,
  sourceWidth: number,
  columns: AxisTaps,
  rows: AxisTaps,
  height: number,
  width: number,
): SampleImage {
  const rowLength = width * CHANNELS;
  const columnFirst = new Int32Array(width);
  const columnSecond = new Int32Array(width);
  const alphaFirst = new Int32Array(width);
  const alphaSecond = new Int32Array(width);
  for (let x = 0; x < width; x++) {
    columnFirst[x] = columns.first[x]! * CHANNELS;
    columnSecond[x] = columns.second[x]! * CHANNELS;
    [alphaFirst[x], alphaSecond[x]] = fixedPointWeights(columns.weight[x]!);
  }

  // Horizontal pass of one source row, in units of 1/2048; the last two rows are cached
  // because consecutive output rows usually read the same source rows.
  const cache = [
    { sourceRow: -1, values: new Int32Array(rowLength) },
    { sourceRow: -1, values: new Int32Array(rowLength) },
  ];
  let nextSlot = 0;
  const horizontal = (sourceRow: number): Int32Array => {
    for (const entry of cache) if (entry.sourceRow === sourceRow) return entry.values;
    const entry = cache[nextSlot]!;
    nextSlot = 1 - nextSlot;
    entry.sourceRow = sourceRow;
    const base = sourceRow * sourceWidth * CHANNELS;
    const values = entry.values;
    for (let x = 0; x < width; x++) {
      const a = base + columnFirst[x]!;
      const b = base + columnSecond[x]!;
      const wa = alphaFirst[x]!;
      const wb = alphaSecond[x]!;
      const out = x * CHANNELS;
      values[out] = wa * source[a]! + wb * source[b]!;
      values[out + 1] = wa * source[a + 1]! + wb * source[b + 1]!;
      values[out + 2] = wa * source[a + 2]! + wb * source[b + 2]!;
    }
    return values;
  };

  const output = new Uint8Array(height * rowLength);
  for (let y = 0; y < height; y++) {
    const [betaFirst, betaSecond] = fixedPointWeights(rows.weight[y]!);
    const top = horizontal(rows.first[y]!);
    const bottom = horizontal(rows.second[y]!);
    const offset = y * rowLength;
    for (let i = 0; i < rowLength; i++) {
      // OpenCV's SIMD vertical pass: drop 4 bits, keep the high 16 bits of each product,
      // then round away the last 2 bits. Every intermediate value fits in int32.
      const upper = ((top[i]! >> 4) * betaFirst) >> 16;
      const lower = ((bottom[i]! >> 4) * betaSecond) >> 16;
      output[offset + i] = (upper + lower + 2) >> 2;
    }
  }
  return { data: output, height, width };
}

function resizeFloat32(
  source: Float32Array,
  sourceWidth: number,
  columns: AxisTaps,
  rows: AxisTaps,
  height: number,
  width: number,
): SampleImage {
  const rowLength = width * CHANNELS;
  const output = new Float32Array(height * rowLength);
  for (let y = 0; y < height; y++) {
    const beta = rows.weight[y]!;
    const top = rows.first[y]! * sourceWidth * CHANNELS;
    const bottom = rows.second[y]! * sourceWidth * CHANNELS;
    const offset = y * rowLength;
    for (let x = 0; x < width; x++) {
      const alpha = columns.weight[x]!;
      const a = columns.first[x]! * CHANNELS;
      const b = columns.second[x]! * CHANNELS;
      for (let c = 0; c < CHANNELS; c++) {
        const upper = (1 - alpha) * source[top + a + c]! + alpha * source[top + b + c]!;
        const lower = (1 - alpha) * source[bottom + a + c]! + alpha * source[bottom + b + c]!;
        output[offset + x * CHANNELS + c] = (1 - beta) * upper + beta * lower;
      }
    }
  }
  return { data: output, height, width };
}
