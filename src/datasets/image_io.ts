/**
 * Image decoding and PNG writing.
 *
 * Every decoded image is 8-bit RGB, row-major `[H, W, 3]` (HWC):
 * - greyscale images are replicated into three channels;
 * - an alpha channel is dropped, keeping the stored colour under transparent pixels (no
 *   compositing). OpenCV's `IMREAD_COLOR`, which MMDetection 2.x uses through mmcv, does the same;
 * - CMYK JPEGs are converted to sRGB by libvips with the embedded ICC profile, or with libvips'
 *   built-in CMYK profile when there is none. OpenCV inverts CMYK without a profile, so
 *   saturated colours can differ from it by about 20 levels;
 * - 16-bit PNGs are reduced to 8 bits by dropping the low byte (`value >> 8`), as OpenCV does.
 *
 * EXIF orientation is ignored by default, because COCO boxes and the `width`/`height` of each
 * image record refer to the stored pixel grid. This differs from mmcv 1.x: `color_type='color'`
 * there means `cv2.IMREAD_COLOR`, which applies the EXIF orientation (mmcv offers
 * `'color_ignore_orientation'` to turn it off), and its pillow backend calls
 * `ImageOps.exif_transpose` for `'color'`. Pass `applyExifOrientation: true` for mmcv's behaviour.
 */
import { readFile } from 'node:fs/promises';

import { PNG } from 'pngjs';
import sharp from 'sharp';

import { DataError } from '../utils/errors.ts';
import { writeFileAtomic } from '../utils/fs.ts';

/** An 8-bit RGB image, row-major `[height, width, 3]`. */
export interface RgbImage {
  data: Uint8Array;
  height: number;
  width: number;
}

export interface DecodeOptions {
  /** COCO image id, quoted in error messages. */
  imageId?: number;
  /** Rotate and mirror the pixels as the EXIF orientation tag specifies (default false). */
  applyExifOrientation?: boolean;
}

function describeSource(source: string, imageId: number | undefined): string {
  return imageId === undefined ? source : `${source} (image id ${imageId})`;
}

/**
 * Decodes a JPEG, PNG (or any other format that sharp reads) from memory into RGB.
 * `source` names the data in errors, usually the file path. Throws DataError when the data
 * is not a readable image, including truncated JPEGs.
 */
export async function decodeImage(buffer: Uint8Array, source: string, options: DecodeOptions = {}): Promise<RgbImage> {
  try {
    // failOn 'error' rejects truncated files but, like OpenCV, accepts recoverable
    // corruption such as a scan segment that ends early ('warning' would reject those too).
    let pipeline = sharp(buffer, { failOn: 'error' });
    if (options.applyExifOrientation === true) pipeline = pipeline.autoOrient();
    const { data, info } = await pipeline
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
      throw new Error(
        `expected ${info.width} x ${info.height} x 3 bytes after conversion to RGB, got ${data.length} bytes in ${info.channels} channels`,
      );
    }
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), height: info.height, width: info.width };
  } catch (error) {
    throw new DataError(`failed to decode image ${describeSource(source, options.imageId)}: ${describeDecodeFailure(buffer, error as Error)}`, {
      cause: error,
    });
  }
}

/**
 * Explains a failed decode. A JPEG without its end-of-image marker is reported as truncated
 * from the bytes themselves, because libvips keeps one error buffer per process and, with other
 * images decoding at the same time, sharp sometimes reports only 'Unknown error'.
 */
function describeDecodeFailure(buffer: Uint8Array, error: Error): string {
  const isJpeg = buffer.length >= 2 && buffer[0] === 0xff && buffer[1] === 0xd8;
  if (isJpeg && !endsWithJpegEoi(buffer)) {
    return `the JPEG data ends before its end-of-image marker after ${buffer.length} bytes (truncated file?); decoder: ${error.message}`;
  }
  return error.message;
}

/** Checks for a 0xFFD9 end-of-image marker within the last 1024 bytes (encoders may pad after it). */
function endsWithJpegEoi(buffer: Uint8Array): boolean {
  const tail = Math.max(1, buffer.length - 1024);
  for (let i = buffer.length - 1; i >= tail; i--) {
    if (buffer[i - 1] === 0xff && buffer[i] === 0xd9) return true;
  }
  return false;
}

/** Reads and decodes an image file into RGB. Throws DataError naming the file when it is missing or not decodable. */
export async function decodeImageFile(path: string, options: DecodeOptions = {}): Promise<RgbImage> {
  let buffer: Buffer;
  try {
    buffer = await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'not found' : `could not be read (${(error as Error).message})`;
    throw new DataError(`image file ${describeSource(path, options.imageId)} ${reason}`, { cause: error });
  }
  return decodeImage(buffer, path, options);
}

/** Encodes 8-bit RGB pixels (`[height, width, 3]`, row-major) as a PNG and writes it atomically. */
export async function writePng(path: string, rgb: Uint8Array, width: number, height: number): Promise<void> {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`writePng ${path}: width and height must be positive integers, got ${width} x ${height}`);
  }
  if (rgb.length !== width * height * 3) {
    throw new RangeError(
      `writePng ${path}: expected ${width} x ${height} x 3 = ${width * height * 3} bytes of RGB, got ${rgb.length}`,
    );
  }
  const pixels = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  const encoded = PNG.sync.write(
    { width, height, data: pixels } as PNG,
    { colorType: 2, inputColorType: 2, inputHasAlpha: false, bitDepth: 8 },
  );
  await writeFileAtomic(path, encoded);
}
