import { readFileSync } from 'node:fs';

import test from 'ava';

import { createRandom } from '../../../src/datasets/random.ts';
import { createSample, type Sample } from '../../../src/datasets/sample.ts';
import {
  buildPipeline,
  flipImageHorizontal,
  Normalize,
  Pad,
  RandomFlip,
  rescaleSize,
  Resize,
  resizeBilinear,
} from '../../../src/datasets/transforms/index.ts';
import { ConfigError } from '../../../src/utils/errors.ts';

const context = (seed = 1) => ({ random: createRandom(seed) });

/** Creates a sample of a synthetic width x height uint8 image whose pixel values encode x and y. */
function makeSample(width: number, height: number, boxes: number[] = []): Sample {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const offset = (y * width + x) * 3;
      data[offset] = x % 256;
      data[offset + 1] = y % 256;
      data[offset + 2] = (x + y) % 256;
    }
  }
  const sample = createSample(1, 'synthetic.png');
  sample.image = { data, height, width };
  sample.originalShape = [height, width];
  sample.imageShape = [height, width];
  sample.padShape = [height, width];
  sample.boxes = Float32Array.from(boxes);
  sample.labels = new Int32Array(boxes.length / 4);
  sample.ignoredBoxes = new Float32Array(0);
  return sample;
}

function assertClose(t: import('ava').ExecutionContext, actual: ArrayLike<number>, expected: number[], tolerance = 1e-4): void {
  t.is(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    t.true(Math.abs(actual[i]! - expected[i]!) <= tolerance, `index ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

test('rescale 640x427 to 1333x800', (t) => {
  // factor = min(1333 / 640, 800 / 427) = 800 / 427; 640 * 800 / 427 = 1199.06 -> 1199.
  t.deepEqual(rescaleSize(427, 640, [1333, 800]), { height: 800, width: 1199 });
  // The edge limits may come in either order, and portrait images swap the result.
  t.deepEqual(rescaleSize(427, 640, [800, 1333]), { height: 800, width: 1199 });
  t.deepEqual(rescaleSize(640, 427, [1333, 800]), { height: 1199, width: 800 });
  // A wide image is limited by the long edge: factor = 1333 / 1000.
  t.deepEqual(rescaleSize(200, 1000, [1333, 800]), { height: 267, width: 1333 });
});

test('Resize 640x427 to 1333x800 boxes', (t) => {
  const sample = makeSample(640, 427, [10, 20, 110, 220, 600, 400, 640, 427]);
  new Resize({ imgScale: [1333, 800] }).apply(sample, context());
  t.deepEqual(sample.imageShape, [800, 1199]);
  t.deepEqual([sample.image!.height, sample.image!.width], [800, 1199]);
  t.is(sample.image!.data.length, 800 * 1199 * 3);
  const scaleX = 1199 / 640;
  const scaleY = 800 / 427;
  assertClose(t, sample.scaleFactor, [scaleX, scaleY], 1e-12);
  assertClose(t, sample.boxes!, [10 * scaleX, 20 * scaleY, 110 * scaleX, 220 * scaleY, 600 * scaleX, 400 * scaleY, 1199, 800]);
});

test('Resize 640x427 to 512x320 clips', (t) => {
  // factor = min(512 / 640, 320 / 427) = 320 / 427 -> 480 x 320; per-axis factors 0.75 and 0.74941.
  const sample = makeSample(640, 427, [10, 20, 110, 220, 600, 400, 650, 430]);
  new Resize({ imgScale: [512, 320] }).apply(sample, context());
  t.deepEqual(sample.imageShape, [320, 480]);
  assertClose(t, sample.scaleFactor, [0.75, 320 / 427], 1e-12);
  // The second box reaches past the image (650, 430) and is clipped to 480 x 320.
  assertClose(t, sample.boxes!, [7.5, 14.98829, 82.5, 164.87119, 450, 299.76581, 480, 320]);
});

test('Resize without keepRatio uses width height', (t) => {
  const sample = makeSample(64, 48, [0, 0, 32, 24]);
  new Resize({ imgScale: [100, 30], keepRatio: false }).apply(sample, context());
  t.deepEqual(sample.imageShape, [30, 100]);
  assertClose(t, sample.boxes!, [0, 0, 50, 15]);
});

test('Resize range mode draws within bounds', (t) => {
  const resize = new Resize({ imgScale: [[1333, 640], [1333, 800]], multiscaleMode: 'range' });
  const random = createRandom(7);
  const shorts = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const [long, short] = resize.chooseScale(random);
    t.is(long, 1333);
    t.true(short >= 640 && short <= 800, `short edge ${short}`);
    shorts.add(short);
  }
  t.true(shorts.size > 50, `only ${shorts.size} distinct short edges in 200 draws`);
  // The same seed draws the same scales.
  t.deepEqual(resize.chooseScale(createRandom(3)), resize.chooseScale(createRandom(3)));
});

test('bilinear equals OpenCV reference', (t) => {
  const reference = JSON.parse(readFileSync('test/fixtures/datasets/bilinear_reference.json', 'utf8')) as {
    height: number;
    width: number;
    image: number[];
    cases: Array<{ height: number; width: number; uint8: number[]; float32: number[] }>;
  };
  const image = { data: Uint8Array.from(reference.image), height: reference.height, width: reference.width };
  const floatImage = { data: Float32Array.from(reference.image, (v) => (v - 100) / 50), height: reference.height, width: reference.width };
  for (const expected of reference.cases) {
    const resized = resizeBilinear(image, expected.height, expected.width);
    t.deepEqual([...resized.data], expected.uint8, `uint8 to ${expected.height} x ${expected.width}`);
    const resizedFloat = resizeBilinear(floatImage, expected.height, expected.width);
    const maxError = Math.max(...expected.float32.map((v, i) => Math.abs(v - resizedFloat.data[i]!)));
    t.true(maxError < 1e-5, `float32 to ${expected.height} x ${expected.width}: max error ${maxError}`);
  }
});

test('RandomFlip mirrors boxes and pixels', (t) => {
  const sample = makeSample(480, 320, [10, 20, 110, 220]);
  RandomFlip.flip(sample);
  t.true(sample.flipped);
  assertClose(t, sample.boxes!, [370, 20, 470, 220]);
  // Pixel x = 0 now contains the original x = 479 (value 479 % 256 = 223).
  t.is(sample.image!.data[0], 223);
  t.is(sample.image!.data[(480 - 1) * 3], 0);
});

test('flip twice is identity', (t) => {
  const sample = makeSample(37, 11, [1.5, 2, 30.25, 9, 0, 0, 37, 11]);
  sample.ignoredBoxes = Float32Array.from([3, 3, 8, 8]);
  const image = sample.image!.data.slice();
  const boxes = sample.boxes!.slice();
  RandomFlip.flip(sample);
  t.notDeepEqual([...sample.image!.data], [...image]);
  assertClose(t, sample.ignoredBoxes, [29, 3, 34, 8]);
  RandomFlip.flip(sample);
  t.false(sample.flipped);
  t.deepEqual([...sample.image!.data], [...image]);
  t.deepEqual([...sample.boxes!], [...boxes]);
  t.deepEqual([...sample.ignoredBoxes], [3, 3, 8, 8]);
  t.deepEqual([...flipImageHorizontal(flipImageHorizontal(sample.image!)).data], [...image]);
});

test('RandomFlip ratio follows the seed', (t) => {
  const flip = new RandomFlip({ flipRatio: 0.5 });
  let flips = 0;
  for (let seed = 0; seed < 400; seed++) {
    if (flip.apply(makeSample(4, 2), context(seed)).flipped) flips += 1;
  }
  t.true(flips > 150 && flips < 250, `${flips} flips in 400`);
  t.false(new RandomFlip({ flipRatio: 0 }).apply(makeSample(4, 2), context()).flipped);
  t.true(new RandomFlip({ flipRatio: 1 }).apply(makeSample(4, 2), context()).flipped);
  t.is(flip.apply(makeSample(4, 2), context(9)).flipped, flip.apply(makeSample(4, 2), context(9)).flipped);
});

test('Pad to multiples of 32', (t) => {
  for (const [height, width, paddedHeight, paddedWidth] of [
    [800, 1199, 800, 1216],
    [320, 480, 320, 480],
    [1, 33, 32, 64],
  ] as const) {
    const sample = makeSample(width, height);
    new Pad({ sizeDivisor: 32 }).apply(sample);
    t.deepEqual(sample.padShape, [paddedHeight, paddedWidth]);
    t.deepEqual(sample.imageShape, [height, width]);
    t.is(sample.padShape![0] % 32, 0);
    t.is(sample.padShape![1] % 32, 0);
    t.is(sample.image!.data.length, paddedHeight * paddedWidth * 3);
  }
  const sample = makeSample(33, 1);
  new Pad().apply(sample);
  // Original pixels stay at the top left, padding is zero at the right and bottom.
  t.is(sample.image!.data[32 * 3], 32);
  t.is(sample.image!.data[33 * 3], 0);
  t.true(sample.image!.data.subarray(64 * 3).every((value) => value === 0));
});

test('Pad fixed size and validation', (t) => {
  const sample = makeSample(10, 5);
  new Pad({ size: [8, 12], padVal: 7 }).apply(sample);
  t.deepEqual(sample.padShape, [8, 12]);
  t.is(sample.image!.data[10 * 3], 7);
  t.throws(() => new Pad({ size: [8, 12], sizeDivisor: 32 }), { instanceOf: ConfigError, message: /either size or sizeDivisor/ });
  t.throws(() => new Pad({ size: [2, 2] }).apply(makeSample(10, 5)), {
    instanceOf: ConfigError,
    message: /size 2 x 2 is smaller than image synthetic\.png \(5 x 10\)/,
  });
});

test('flip after pad is rejected', (t) => {
  const sample = makeSample(33, 10);
  new Pad().apply(sample);
  t.throws(() => RandomFlip.flip(sample), { instanceOf: ConfigError, message: /put RandomFlip before Pad/ });
});

test('Normalize ImageNet values', (t) => {
  const sample = createSample(1, 'pixel.png');
  sample.image = { data: Uint8Array.from([255, 0, 128, 123, 116, 104]), height: 1, width: 2 };
  new Normalize().apply(sample);
  t.true(sample.image.data instanceof Float32Array);
  // (255 - 123.675) / 58.395, (0 - 116.28) / 57.12, (128 - 103.53) / 57.375, ...
  assertClose(t, sample.image.data, [2.248926, -2.035714, 0.426492, -0.011559, -0.004902, 0.008192]);
});

test('Normalize toRgb false outputs BGR', (t) => {
  const sample = createSample(1, 'pixel.png');
  sample.image = { data: Uint8Array.from([10, 20, 30]), height: 1, width: 1 };
  new Normalize({ mean: [1, 2, 3], std: [1, 2, 4], toRgb: false }).apply(sample);
  // Output channel 0 is blue: (30 - 1) / 1, then green (20 - 2) / 2, then red (10 - 3) / 4.
  assertClose(t, sample.image.data, [29, 9, 1.75]);
});

test('transform options are validated', (t) => {
  t.throws(() => new Resize({ imgScale: [1333] as never }), { instanceOf: ConfigError, message: /imgScale must be/ });
  t.throws(() => new RandomFlip({ flipRatio: 1.5 }), { instanceOf: ConfigError, message: /flipRatio must be a number in \[0, 1\], got 1\.5/ });
  t.throws(() => new RandomFlip({ direction: 'vertical' as never }), { instanceOf: ConfigError, message: /direction must be 'horizontal'/ });
  t.throws(() => new Normalize({ std: [1, 0, 1] }), { instanceOf: ConfigError, message: /std must not contain 0/ });
  t.throws(() => new Normalize({ mean: [1, 2] }), { instanceOf: ConfigError, message: /mean must be 3 finite numbers, got \[1,2\]/ });
});

test('pipeline runs in order', async (t) => {
  const pipeline = buildPipeline(
    [
      { type: 'Resize', imgScale: [512, 320] },
      { type: 'RandomFlip', flipRatio: 1 },
      { type: 'Normalize' },
      { type: 'Pad', sizeDivisor: 32 },
    ],
    'data.train.pipeline',
  );
  const sample = await pipeline.apply(makeSample(640, 427, [10, 20, 110, 220]), context());
  t.deepEqual(sample.imageShape, [320, 480]);
  t.deepEqual(sample.padShape, [320, 480]);
  t.true(sample.flipped);
  t.true(sample.image!.data instanceof Float32Array);
  assertClose(t, sample.boxes!, [480 - 82.5, 14.98829, 480 - 7.5, 164.87119]);
});

test('pipeline errors name the entry', (t) => {
  const error = t.throws(() => buildPipeline([{ type: 'Resize' }, { type: 'Flip' } as never], 'data.train.pipeline'));
  t.regex(error?.message ?? '', /^data\.train\.pipeline\[1\]\.type: 'Flip' is not registered in TRANSFORMS/);
  const optionError = t.throws(() => buildPipeline([{ type: 'Pad', size_divisor: 32 } as never], 'data.val.pipeline'), {
    instanceOf: ConfigError,
  });
  t.regex(optionError?.message ?? '', /^data\.val\.pipeline\[0\]: Pad: unknown option 'size_divisor' \(did you mean 'sizeDivisor'\?\)/);
});
