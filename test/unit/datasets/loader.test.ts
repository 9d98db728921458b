import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import { CocoDataset } from '../../../src/datasets/coco_dataset.ts';
import { collate } from '../../../src/datasets/collate.ts';
import { DataLoader } from '../../../src/datasets/loader.ts';
import { createSample, type Dataset, type Sample, type TransformContext } from '../../../src/datasets/sample.ts';
import { ConfigError, DataError } from '../../../src/utils/errors.ts';

const MINI_ANN = 'data/coco-mini/annotations/instances_train2017.json';
const MINI_IMAGES = 'data/coco-mini/train2017';

test.before(async () => {
  await tf.setBackend('cpu');
});

/**
 * An in-memory dataset: item i is a (2 + i % 3) x (3 + i % 4) image filled with i, and one
 * random draw is stored in its scale factor, so tests can see the per-sample random source.
 */
class CountingDataset implements Dataset {
  readonly requested: number[] = [];

  constructor(
    readonly length: number,
    private readonly delayMs = 0,
  ) {}

  aspectRatioFlag(index: number): number {
    return index % 2;
  }

  async getItem(index: number, context: TransformContext): Promise<Sample> {
    this.requested.push(index);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    const height = 2 + (index % 3);
    const width = 3 + (index % 4);
    const sample = createSample(index, `item-${index}.png`);
    sample.image = { data: new Uint8Array(height * width * 3).fill(index + 1), height, width };
    sample.scaleFactor = [context.random(), 1];
    sample.boxes = Float32Array.from([0, 0, 1, 1]);
    sample.labels = Int32Array.from([index]);
    return sample;
  }
}

async function collectEpoch(loader: DataLoader, epoch: number, startBatch = 0) {
  const batches: Array<{ indices: number[]; draws: number[] }> = [];
  for await (const batch of loader.iterate(epoch, { startBatch })) {
    batches.push({ indices: batch.indices, draws: batch.metas.map((meta) => meta.scaleFactor[0]) });
    batch.images.dispose();
  }
  return batches;
}

test('same seed and epoch, same order', (t) => {
  const dataset = new CountingDataset(23);
  const first = new DataLoader(dataset, { batchSize: 4, seed: 5, groupByAspectRatio: false });
  const second = new DataLoader(dataset, { batchSize: 4, seed: 5, groupByAspectRatio: false });
  t.deepEqual(first.epochOrder(3), second.epochOrder(3));
  t.deepEqual([...first.epochOrder(3)].sort((a, b) => a - b), [...Array(23).keys()]);
  t.notDeepEqual(first.epochOrder(3), first.epochOrder(4));
  t.notDeepEqual(first.epochOrder(3), new DataLoader(dataset, { batchSize: 4, seed: 6, groupByAspectRatio: false }).epochOrder(3));
  t.notDeepEqual(first.epochOrder(3), [...Array(23).keys()]);
});

test('without shuffle order is sequential', (t) => {
  const loader = new DataLoader(new CountingDataset(5), { batchSize: 2, shuffle: false });
  t.deepEqual(loader.epochBatches(0), [[0, 1], [2, 3], [4]]);
  const dropping = new DataLoader(new CountingDataset(5), { batchSize: 2, shuffle: false, dropLast: true });
  t.deepEqual(dropping.epochBatches(0), [[0, 1], [2, 3]]);
});

test('grouped batches share orientation', (t) => {
  // 7 items with flag 1 (odd) and 8 with flag 0: groups pad to 8 + 8 with batch size 4.
  const loader = new DataLoader(new CountingDataset(15), { batchSize: 4, seed: 1 });
  t.true(loader.groupByAspectRatio);
  const batches = loader.epochBatches(0);
  t.is(batches.length, 4);
  for (const batch of batches) {
    t.is(batch.length, 4);
    t.is(new Set(batch.map((index) => index % 2)).size, 1, `mixed orientations in ${batch}`);
  }
  const seen = new Set(batches.flat());
  t.is(seen.size, 15);
  t.deepEqual(loader.epochBatches(0), batches);
});

test('resume yields the same batches', async (t) => {
  const loader = new DataLoader(new CountingDataset(11), { batchSize: 3, seed: 9, groupByAspectRatio: false });
  const full = await collectEpoch(loader, 2);
  t.is(full.length, 4);
  t.deepEqual(full.map((batch) => batch.indices.length), [3, 3, 3, 2]);
  const resumed = await collectEpoch(new DataLoader(new CountingDataset(11), { batchSize: 3, seed: 9, groupByAspectRatio: false }), 2, 2);
  t.deepEqual(resumed, full.slice(2));
  // Per-sample random draws depend on position, so two samples never share one.
  t.is(new Set(full.flatMap((batch) => batch.draws)).size, 11);
});

test.serial('batches of two pad to batch max', async (t) => {
  const before = tf.memory().numTensors;
  const loader = new DataLoader(new CountingDataset(4), { batchSize: 2, shuffle: false });
  const shapes: number[][] = [];
  for await (const batch of loader.iterate(0)) {
    // Items 0 and 1 are 2 x 3 and 3 x 4; items 2 and 3 are 4 x 5 and 2 x 6.
    shapes.push(batch.images.shape);
    const pixels = await batch.images.data();
    const [, height, width] = batch.images.shape;
    // Each image fills its top-left corner with (index + 1) and zeros elsewhere.
    for (const [n, meta] of batch.metas.entries()) {
      const slice = pixels.subarray(n * height * width * 3, (n + 1) * height * width * 3);
      const [imageHeight, imageWidth] = meta.imageShape;
      const actual: number[] = [];
      const expected: number[] = [];
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          actual.push(slice[(y * width + x) * 3]!);
          expected.push(y < imageHeight && x < imageWidth ? batch.indices[n]! + 1 : 0);
        }
      }
      t.deepEqual(actual, expected, `channel 0 of image ${n} in batch ${batch.batchIndex}`);
    }
    for (const meta of batch.metas) t.deepEqual(meta.padShape, [height, width]);
    t.deepEqual(batch.targets.map((target) => [...target.labels]), batch.indices.map((index) => [index]));
    batch.images.dispose();
  }
  t.deepEqual(shapes, [
    [2, 3, 4, 3],
    [2, 4, 6, 3],
  ]);
  t.is(tf.memory().numTensors, before);
});

test('wait time is measured', async (t) => {
  const loader = new DataLoader(new CountingDataset(4, 30), { batchSize: 2, shuffle: false, prefetchBatches: 0 });
  const waits: number[] = [];
  for await (const batch of loader.iterate(0)) {
    waits.push(batch.waitMs);
    batch.images.dispose();
  }
  // Without prefetching each batch costs the caller the dataset's 30 ms delay.
  t.true(waits.every((wait) => wait >= 25), `waits ${waits}`);
  t.is(loader.stats.batches, 2);
  t.true(Math.abs(loader.stats.waitMs - waits[0]! - waits[1]!) < 1e-9);
});

test('prefetch loads ahead while caller works', async (t) => {
  const dataset = new CountingDataset(8, 20);
  const loader = new DataLoader(dataset, { batchSize: 2, shuffle: false, prefetchBatches: 2 });
  const waits: number[] = [];
  for await (const batch of loader.iterate(0)) {
    if (batch.batchIndex === 0) t.deepEqual([...dataset.requested].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5]);
    waits.push(batch.waitMs);
    batch.images.dispose();
    // Simulated training step, longer than loading one batch.
    await new Promise((resolve) => setTimeout(resolve, 40));
  }
  t.true(waits[0]! >= 15, `first wait ${waits[0]}`);
  t.true(waits.slice(1).every((wait) => wait < 15), `later waits ${waits}`);
});

test('sample error reaches the caller', async (t) => {
  const dataset = new CountingDataset(4);
  dataset.getItem = async (index) => {
    throw new Error(`cannot load item ${index}`);
  };
  const loader = new DataLoader(dataset, { batchSize: 2, shuffle: false });
  await t.throwsAsync(async () => {
    for await (const batch of loader.iterate(0)) batch.images.dispose();
  }, { message: 'cannot load item 0' });
});

test('loader options are validated', (t) => {
  const dataset = new CountingDataset(3);
  t.throws(() => new DataLoader(dataset, { batchSize: 0 }), { instanceOf: ConfigError, message: /batchSize must be a positive integer, got 0/ });
  t.throws(() => new DataLoader(dataset, { batchSize: 2, shuffle: false, groupByAspectRatio: true }), {
    instanceOf: ConfigError,
    message: /groupByAspectRatio needs shuffle/,
  });
  t.throws(() => new DataLoader(dataset, { batchSize: 2, batch_size: 2 } as never), { instanceOf: ConfigError, message: /unknown option 'batch_size'/ });
});

test.serial('coco-mini batches through full pipeline', async (t) => {
  const dataset = new CocoDataset({
    annFile: MINI_ANN,
    imgPrefix: MINI_IMAGES,
    pipeline: [
      { type: 'LoadImageFromFile' },
      { type: 'LoadAnnotations' },
      { type: 'Resize', imgScale: [512, 320] },
      { type: 'RandomFlip', flipRatio: 0.5 },
      { type: 'Normalize' },
      { type: 'Pad', sizeDivisor: 32 },
    ],
  });
  const loader = new DataLoader(dataset, { batchSize: 2, seed: 3 });
  const before = tf.memory().numTensors;
  let count = 0;
  for await (const batch of loader.iterate(0)) {
    const [n, height, width, channels] = batch.images.shape;
    t.is(n, 2);
    t.is(channels, 3);
    t.is(height % 32, 0);
    t.is(width % 32, 0);
    for (const [i, meta] of batch.metas.entries()) {
      const info = dataset.imageInfo(batch.indices[i]!);
      t.deepEqual(meta.originalShape, [info.height, info.width]);
      t.true(Math.max(...meta.imageShape) <= 512 && Math.min(...meta.imageShape) <= 320);
      t.deepEqual(meta.padShape, [height, width]);
      const boxes = batch.targets[i]!.boxes;
      for (let j = 0; j < boxes.length; j += 4) {
        t.true(boxes[j]! >= 0 && boxes[j + 2]! <= meta.imageShape[1] && boxes[j]! <= boxes[j + 2]!);
        t.true(boxes[j + 1]! >= 0 && boxes[j + 3]! <= meta.imageShape[0] && boxes[j + 1]! <= boxes[j + 3]!);
      }
    }
    batch.images.dispose();
    count += 1;
    if (count === 3) break;
  }
  t.is(count, 3);
  t.is(tf.memory().numTensors, before);
});

test('collate converts uint8 and keeps metas', (t) => {
  const sample = createSample(5, 'a.png');
  sample.image = { data: Uint8Array.from([1, 2, 3, 4, 5, 6]), height: 1, width: 2 };
  sample.flipped = true;
  sample.scaleFactor = [0.5, 0.25];
  const batch = collate([sample], { sizeDivisor: 4 });
  t.deepEqual(batch.images.shape, [1, 4, 4, 3]);
  t.deepEqual([...batch.images.dataSync().subarray(0, 6)], [1, 2, 3, 4, 5, 6]);
  t.deepEqual(batch.metas[0], {
    imageId: 5,
    originalShape: [1, 2],
    imageShape: [1, 2],
    padShape: [4, 4],
    scaleFactor: [0.5, 0.25],
    flipped: true,
    filePath: 'a.png',
  });
  t.is(batch.targets[0]!.boxes.length, 0);
  batch.images.dispose();
});

test('workers give the same batches', async (t) => {
  const dataset = new CocoDataset({
    annFile: MINI_ANN,
    imgPrefix: MINI_IMAGES,
    pipeline: [
      { type: 'LoadImageFromFile' },
      { type: 'LoadAnnotations' },
      { type: 'Resize', imgScale: [256, 160] },
      { type: 'RandomFlip', flipRatio: 0.5 },
      { type: 'Normalize' },
      { type: 'Pad', sizeDivisor: 32 },
    ],
  });
  const collect = async (workers: number) => {
    const loader = new DataLoader(dataset, { batchSize: 2, seed: 11, workers });
    const batches: Array<{ pixels: number[]; metas: unknown; boxes: number[][] }> = [];
    try {
      for await (const batch of loader.iterate(1)) {
        batches.push({
          pixels: [...(await batch.images.data())],
          metas: batch.metas,
          boxes: batch.targets.map((target) => [...target.boxes]),
        });
        batch.images.dispose();
        if (batches.length === 4) break;
      }
    } finally {
      await loader.close();
    }
    return batches;
  };
  const mainThread = await collect(0);
  const inWorkers = await collect(2);
  t.is(inWorkers.length, 4);
  for (let i = 0; i < 4; i++) {
    t.deepEqual(inWorkers[i]!.metas, mainThread[i]!.metas, `metas of batch ${i}`);
    t.deepEqual(inWorkers[i]!.boxes, mainThread[i]!.boxes, `boxes of batch ${i}`);
    t.true(
      inWorkers[i]!.pixels.length === mainThread[i]!.pixels.length && inWorkers[i]!.pixels.every((v, j) => v === mainThread[i]!.pixels[j]),
      `pixels of batch ${i}`,
    );
  }
});

test('worker errors keep their class', async (t) => {
  const folder = await mkdtemp(join(tmpdir(), 'rladet-loader-'));
  const annFile = join(folder, 'missing-images.json');
  await writeFile(
    annFile,
    JSON.stringify({
      images: [{ id: 3, file_name: 'absent.jpg', width: 64, height: 48 }],
      annotations: [{ id: 1, image_id: 3, category_id: 1, bbox: [1, 1, 10, 10], area: 100, iscrowd: 0 }],
      categories: [{ id: 1, name: 'thing' }],
    }),
  );
  const dataset = new CocoDataset({ annFile, imgPrefix: folder, pipeline: [{ type: 'LoadImageFromFile' }] });
  const loader = new DataLoader(dataset, { batchSize: 1, workers: 1 });
  try {
    const error = await t.throwsAsync(async () => {
      for await (const batch of loader.iterate(0)) batch.images.dispose();
    }, { instanceOf: DataError });
    t.is(error?.message, `image file ${join(folder, 'absent.jpg')} (image id 3) not found`);
  } finally {
    await loader.close();
    await rm(folder, { recursive: true, force: true });
  }
});

test('workers need a preparable dataset', (t) => {
  t.throws(() => new DataLoader(new CountingDataset(3), { batchSize: 1, workers: 1 }), {
    instanceOf: ConfigError,
    message: 'DataLoader: workers > 0 needs a dataset with prepareItem() and pipelineConfigs',
  });
});
