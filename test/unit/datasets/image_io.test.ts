import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import test from 'ava';
import { PNG } from 'pngjs';
import sharp from 'sharp';

import { decodeImage, decodeImageFile, writePng } from '../../../src/datasets/image_io.ts';
import { DataError } from '../../../src/utils/errors.ts';

let folder = '';

test.before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'rladet-image-io-'));
});

test.after.always(async () => {
  await rm(folder, { recursive: true, force: true });
});

function pixelsOf(data: Uint8Array, x: number, y: number, width: number): number[] {
  const offset = (y * width + x) * 3;
  return [data[offset]!, data[offset + 1]!, data[offset + 2]!];
}

test('greyscale PNG becomes three equal channels', async (t) => {
  const png = await sharp(Buffer.from([10, 20, 30, 40]), { raw: { width: 2, height: 2, channels: 1 } }).png().toBuffer();
  const image = await decodeImage(png, 'grey.png');
  t.is(image.width, 2);
  t.is(image.height, 2);
  t.deepEqual([...image.data], [10, 10, 10, 20, 20, 20, 30, 30, 30, 40, 40, 40]);
});

test('RGBA PNG drops alpha without compositing', async (t) => {
  // The first pixel is fully transparent: its stored colour survives (no blend over black).
  const rgba = Buffer.from([200, 100, 50, 0, 1, 2, 3, 255, 90, 80, 70, 128]);
  const png = await sharp(rgba, { raw: { width: 3, height: 1, channels: 4 } }).png().toBuffer();
  const image = await decodeImage(png, 'rgba.png');
  t.deepEqual([...image.data], [200, 100, 50, 1, 2, 3, 90, 80, 70]);
});

test('grey with alpha PNG becomes RGB', async (t) => {
  const png = await sharp(Buffer.from([77, 0, 99, 128]), { raw: { width: 2, height: 1, channels: 2 } }).png().toBuffer();
  const image = await decodeImage(png, 'grey-alpha.png');
  t.deepEqual([...image.data], [77, 77, 77, 99, 99, 99]);
});

test('16-bit PNG keeps the high byte', async (t) => {
  const samples = new Uint16Array([65535, 32768, 25700, 0, 256, 255, 0x8080, 0x7f7f, 0x80ff, 1, 2, 3]);
  const png = PNG.sync.write({ width: 2, height: 2, data: Buffer.from(samples.buffer) } as PNG, {
    colorType: 2,
    inputColorType: 2,
    bitDepth: 16,
    inputHasAlpha: false,
  });
  t.is((await sharp(png).metadata()).depth, 'ushort');
  const image = await decodeImage(png, 'deep.png');
  t.deepEqual([...image.data], [255, 128, 100, 0, 1, 0, 128, 127, 128, 0, 0, 0]);
});

test('CMYK JPEG converts to sRGB', async (t) => {
  // Four 8 x 8 blocks stacked vertically: white, red, black, a mid green.
  const colours = [
    [255, 255, 255],
    [255, 0, 0],
    [0, 0, 0],
    [40, 160, 90],
  ];
  const rgb = Buffer.from(colours.flatMap((colour) => new Array<number[]>(64).fill(colour).flat()));
  const jpeg = await sharp(rgb, { raw: { width: 8, height: 32, channels: 3 } }).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
  const metadata = await sharp(jpeg).metadata();
  t.is(metadata.space, 'cmyk');
  t.is(metadata.channels, 4);

  const image = await decodeImage(jpeg, 'cmyk.jpg');
  t.is(image.data.length, 8 * 32 * 3);
  t.deepEqual(pixelsOf(image.data, 4, 4, 8), [255, 255, 255]);
  // Through libvips' CMYK profile the colours come back close, not exact: red measured
  // [232, 0, 21], black [7, 3, 6], green [19, 157, 82]. Without a conversion the decoder
  // would return C, M, Y bytes, such as [0, 255, 255] for red.
  const red = pixelsOf(image.data, 4, 12, 8);
  t.true(red[0]! >= 220 && red[1]! <= 15 && red[2]! <= 35, `red decoded as ${red}`);
  const black = pixelsOf(image.data, 4, 20, 8);
  t.true(black.every((value) => value <= 15), `black decoded as ${black}`);
  const green = pixelsOf(image.data, 4, 28, 8);
  t.true(green.every((value, c) => Math.abs(value - colours[3]![c]!) <= 25), `green decoded as ${green}`);
});

test('EXIF orientation ignored unless requested', async (t) => {
  // A 4 x 2 image tagged with orientation 6 (display rotated 90 degrees clockwise).
  const pixels = Buffer.from(Array.from({ length: 4 * 2 * 3 }, (_, i) => (i * 10) % 256));
  const jpeg = await sharp(pixels, { raw: { width: 4, height: 2, channels: 3 } }).jpeg().withMetadata({ orientation: 6 }).toBuffer();
  const stored = await decodeImage(jpeg, 'rotated.jpg');
  t.deepEqual([stored.width, stored.height], [4, 2]);
  const rotated = await decodeImage(jpeg, 'rotated.jpg', { applyExifOrientation: true });
  t.deepEqual([rotated.width, rotated.height], [2, 4]);
});

test('truncated JPEG names file and image id', async (t) => {
  const whole = await readFile('data/coco-mini/train2017/000000000790.jpg');
  const path = join(folder, 'truncated.jpg');
  await writeFile(path, whole.subarray(0, Math.floor(whole.length / 2)));
  const error = await t.throwsAsync(decodeImageFile(path, { imageId: 790 }), { instanceOf: DataError });
  t.true(
    error!.message.startsWith(
      `failed to decode image ${path} (image id 790): the JPEG data ends before its end-of-image marker after ${Math.floor(whole.length / 2)} bytes (truncated file?); decoder: `,
    ),
    error!.message,
  );
});

test('missing file names file and image id', async (t) => {
  const path = join(folder, 'absent.jpg');
  const error = await t.throwsAsync(decodeImageFile(path, { imageId: 42 }), { instanceOf: DataError });
  t.is(error!.message, `image file ${path} (image id 42) not found`);
});

test('non-image data is a DataError', async (t) => {
  const error = await t.throwsAsync(decodeImage(Buffer.from('not an image'), 'notes.txt'), { instanceOf: DataError });
  t.regex(error!.message, /^failed to decode image notes\.txt: /);
});

test('real COCO JPEG decodes at its size', async (t) => {
  const image = await decodeImageFile('data/coco-mini/train2017/000000000790.jpg');
  t.deepEqual([image.width, image.height], [640, 422]);
  t.is(image.data.length, 640 * 422 * 3);
});

test('writePng round-trips RGB pixels', async (t) => {
  const rgb = Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
  const path = join(folder, 'out.png');
  await writePng(path, rgb, 3, 2);
  const decoded = PNG.sync.read(await readFile(path));
  t.is(decoded.width, 3);
  t.is(decoded.height, 2);
  t.is(decoded.colorType, 2);
  const back = await decodeImageFile(path);
  t.deepEqual([...back.data], [...rgb]);
});

test('writePng rejects a wrong buffer size', async (t) => {
  const error = await t.throwsAsync(writePng(join(folder, 'bad.png'), new Uint8Array(17), 3, 2), { instanceOf: RangeError });
  t.regex(error!.message, /expected 3 x 2 x 3 = 18 bytes of RGB, got 17/);
});
