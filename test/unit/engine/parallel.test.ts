import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import test from 'ava';

import {
  allocateGradientBuffers,
  averageSlots,
  checkSameLayout,
  chunkOf,
  layoutParameters,
} from '../../../src/engine/parallel/gradient_buffer.ts';
import { splitBatch } from '../../../src/engine/parallel/parallel_trainer.ts';
import { resolveWorkerCount } from '../../../src/engine/parallel/worker_count.ts';
import type { GroundTruth, ImageMeta } from '../../../src/models/types.ts';
import { ConfigError, RladetError } from '../../../src/utils/errors.ts';
import { setLogLevel } from '../../../src/utils/logger.ts';

test('layout offsets follow parameter order', (t) => {
  const layout = layoutParameters([
    { name: 'conv.weight', shape: [3, 3, 2, 4] },
    { name: 'conv.bias', shape: [4] },
    { name: 'fc.weight', shape: [4, 5] },
  ]);
  t.deepEqual(layout.offsets, [0, 72, 76]);
  t.deepEqual(layout.sizes, [72, 4, 20]);
  t.is(layout.size, 96);

  const buffers = allocateGradientBuffers(layout, 3);
  t.is(buffers.gradients.byteLength, 3 * 96 * 4);
  t.is(buffers.present.byteLength, 3 * 3);
});

test('layout mismatch names first difference', (t) => {
  const main = [
    { name: 'a', shape: [2] },
    { name: 'b', shape: [3, 1] },
  ];
  t.notThrows(() => checkSameLayout(main, main, 'training worker 1'));
  const reshaped = t.throws(() => checkSameLayout(main, [main[0]!, { name: 'b', shape: [1, 3] }], 'training worker 1'), { instanceOf: RladetError });
  t.is(
    reshaped!.message,
    "training worker 1: trainable parameter 1 is 'b' [1, 3] but the main thread's model has 'b' [3, 1], so " +
      'the worker must build the same model (same config and the same imported modules)',
  );
  const shorter = t.throws(() => checkSameLayout(main, [main[0]!], 'training worker 0'));
  t.true(shorter!.message.startsWith("training worker 0: trainable parameter 1 is nothing but the main thread's model has 'b' [3, 1]"), shorter!.message);
});

test('chunks cover the slot once', (t) => {
  for (const [size, workers] of [
    [10, 3],
    [2, 4],
    [0, 2],
    [1_000_003, 7],
  ] as const) {
    let next = 0;
    for (let index = 0; index < workers; index++) {
      const { start, end } = chunkOf(size, index, workers);
      t.is(start, next, `size ${size}, worker ${index}`);
      t.true(end >= start);
      next = end;
    }
    t.is(next, size, `size ${size} with ${workers} workers`);
  }
});

test('average sums in float64 in slot order', (t) => {
  // Three slots of two elements. Element 0: 2^24 + 1 + 1 is 16777218 in float64, but float32
  // additions would round 2^24 + 1 back to 2^24 and give 16777216.
  const slotSize = 2;
  const gradients = new Float32Array([16777216, 0.5, 1, 0.25, 1, -0.75, 99, 99]);
  averageSlots(gradients, slotSize, 3, 0, slotSize);
  t.is(gradients[0], Math.fround(16777218 / 3));
  t.not(gradients[0], Math.fround(16777216 / 3));
  t.is(gradients[1], 0);
  // Slots past `active` (the fourth contains 99s) are not read, and slots 1.. stay as they were.
  t.deepEqual(Array.from(gradients.subarray(2)), [1, 0.25, 1, -0.75, 99, 99]);
});

test('average writes only its chunk', (t) => {
  const gradients = new Float32Array([1, 2, 3, 4, 3, 4, 5, 6]);
  averageSlots(gradients, 4, 2, 1, 3);
  t.deepEqual(Array.from(gradients.subarray(0, 4)), [1, 3, 4, 4]);
  const single = new Float32Array([0.1, 0.2]);
  averageSlots(single, 2, 1, 0, 2);
  t.deepEqual(Array.from(single), [Math.fround(0.1), Math.fround(0.2)]);
});

test('worker count resolves per backend', (t) => {
  setLogLevel('error');
  t.is(resolveWorkerCount(undefined, 'wasm', 2, 8), 1);
  t.is(resolveWorkerCount('auto', 'wasm', 2, 8), 2);
  t.is(resolveWorkerCount('auto', 'cpu', 16, 2), 2);
  t.is(resolveWorkerCount('auto', 'wasm', 1, 4), 1);
  t.is(resolveWorkerCount('auto', 'tensorflow', 8, 8), 1);
  t.is(resolveWorkerCount(2, 'wasm', 4, 1), 2);
  t.is(resolveWorkerCount(4, 'tensorflow', 4, 8), 1);
  t.is(resolveWorkerCount(1, 'tensorflow', 4, 8), 1);
});

test('worker count rejects bad values', (t) => {
  const tooMany = t.throws(() => resolveWorkerCount(3, 'wasm', 2, 8), { instanceOf: ConfigError });
  t.is(
    tooMany!.message,
    'runner.workers: 3 workers need at least 3 images per batch, but data.imagesPerBatch is 2. Use at most 2 workers or a larger batch.',
  );
  for (const bad of [0, -1, 1.5, 'two']) {
    const error = t.throws(() => resolveWorkerCount(bad as number, 'wasm', 2, 8), { instanceOf: ConfigError });
    t.is(error!.message, `runner.workers: expected a positive integer or 'auto', got ${JSON.stringify(bad)}`);
  }
});

function meta(imageId: number): ImageMeta {
  return { imageId, originalShape: [2, 2], imageShape: [2, 2], padShape: [2, 3], scaleFactor: [1, 1], flipped: false, filePath: `${imageId}.jpg` };
}

function target(label: number): GroundTruth {
  return { boxes: new Float32Array([0, 0, 1, 1]), labels: new Int32Array([label]) };
}

test.serial('split gives whole images per shard', async (t) => {
  await tf.setBackend('cpu');
  const before = tf.memory().numTensors;
  // Three 2x3 images whose pixels are (image, row, column, channel) as one number.
  const values = new Float32Array(3 * 2 * 3 * 3).map((_, i) => i);
  const images = tf.tensor4d(values, [3, 2, 3, 3]);
  const batch = { images, metas: [meta(1), meta(2), meta(3)], targets: [target(0), target(1), target(2)] };

  const shards = splitBatch(batch, 2);
  t.deepEqual(
    shards.map((shard) => shard.shape),
    [
      [2, 2, 3, 3],
      [1, 2, 3, 3],
    ],
  );
  t.deepEqual(Array.from(shards[0]!.pixels), Array.from(values.subarray(0, 36)));
  t.deepEqual(Array.from(shards[1]!.pixels), Array.from(values.subarray(36)));
  t.deepEqual(
    shards.map((shard) => shard.metas.map((m) => m.imageId)),
    [[1, 2], [3]],
  );
  t.deepEqual(Array.from(shards[1]!.targets[0]!.labels), [2]);
  // Each shard owns its buffer, so transferring it leaves the batch tensor intact.
  for (const shard of shards) t.is(shard.pixels.byteLength, shard.pixels.buffer.byteLength);

  // More workers than images: one image per shard, the other workers get none.
  t.deepEqual(
    splitBatch(batch, 5).map((shard) => shard.shape[0]),
    [1, 1, 1],
  );
  t.deepEqual(Array.from(images.dataSync()), Array.from(values));
  images.dispose();
  t.is(tf.memory().numTensors, before);
});
