import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import test from 'ava';
import sharp from 'sharp';

import { CocoDataset, describeDrops } from '../../../src/datasets/coco_dataset.ts';
import { createRandom } from '../../../src/datasets/random.ts';
import { DATASETS } from '../../../src/registry/index.ts';
import { ConfigError } from '../../../src/utils/errors.ts';
import { addLogSink } from '../../../src/utils/logger.ts';

const MINI_ANN = 'data/coco-mini/annotations/instances_train2017.json';
const MINI_IMAGES = 'data/coco-mini/train2017';

let folder = '';
const context = () => ({ random: createRandom(1) });

/** Collects the log lines written while `run` executes; tests that use it run serially. */
async function captureLog<T>(run: () => T | Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const remove = addLogSink((line) => lines.push(line));
  try {
    return { result: await run(), lines };
  } finally {
    remove();
  }
}

/**
 * Returns a hand-made file. Image 1 (100 x 80) has two zero-size boxes, one box outside the
 * image, two usable boxes and one crowd region. Image 2 has only a crowd region, and image 3
 * is 20 x 20.
 */
function handMadeCoco(): object {
  const annotation = (id: number, imageId: number, bbox: number[], categoryId = 3, iscrowd = 0) => ({
    id,
    image_id: imageId,
    category_id: categoryId,
    bbox,
    area: Math.max(bbox[2]! * bbox[3]!, 1),
    iscrowd,
  });
  return {
    images: [
      { id: 1, file_name: 'one.png', width: 100, height: 80 },
      { id: 2, file_name: 'two.png', width: 64, height: 64 },
      { id: 3, file_name: 'three.png', width: 20, height: 20 },
    ],
    annotations: [
      annotation(10, 1, [10, 10, 0, 20]),
      annotation(11, 1, [10, 10, 20, 0.5]),
      annotation(12, 1, [200, 10, 20, 20]),
      annotation(13, 1, [10, 10, 20, 20], 7),
      annotation(14, 1, [90, 70, 30, 30]),
      annotation(15, 1, [50, 40, 30, 30], 3, 1),
      annotation(16, 2, [5, 5, 10, 10], 3, 1),
      annotation(17, 3, [1, 1, 5, 5]),
    ],
    categories: [
      { id: 7, name: 'truck' },
      { id: 3, name: 'car' },
    ],
  };
}

test.before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'rladet-coco-dataset-'));
  await writeFile(join(folder, 'hand.json'), JSON.stringify(handMadeCoco()));
});

test.after.always(async () => {
  await rm(folder, { recursive: true, force: true });
});

test('coco-mini labels map gaps contiguously', (t) => {
  const dataset = new CocoDataset({ annFile: MINI_ANN, imgPrefix: MINI_IMAGES });
  t.is(dataset.classes.length, 80);
  t.is(dataset.catIds.length, 80);
  // COCO ids run 1..90 with 10 gaps (12, 26, 29, 30, 45, 66, 68, 69, 71, 83).
  t.is(dataset.labelToCatId(0), 1);
  t.is(dataset.classes[0], 'person');
  t.is(dataset.labelToCatId(10), 11);
  t.is(dataset.labelToCatId(11), 13);
  t.is(dataset.classes[11], 'stop sign');
  t.is(dataset.labelToCatId(79), 90);
  t.is(dataset.classes[79], 'toothbrush');
  t.is(dataset.catIdToLabel(40), 35);
  t.is(dataset.catIdToLabel(72), 62);
  t.is(dataset.catIdToLabel(12), undefined);
  for (let label = 0; label < 80; label++) t.is(dataset.catIdToLabel(dataset.labelToCatId(label)), label);
  t.throws(() => dataset.labelToCatId(80), { instanceOf: RangeError, message: /label 80 is outside 0\.\.79/ });
});

test('coco-mini boxes, crowds and counts', (t) => {
  const dataset = new CocoDataset({ annFile: MINI_ANN, imgPrefix: MINI_IMAGES });
  t.is(dataset.length, 26);
  let boxes = 0;
  let crowds = 0;
  for (let i = 0; i < dataset.length; i++) {
    boxes += dataset.annotationInfo(i)!.labels.length;
    crowds += dataset.annotationInfo(i)!.ignoredBoxes.length / 4;
  }
  t.is(boxes, 328);
  t.is(crowds, 5);
  t.deepEqual(dataset.dropCounts, { ignoreFlag: 0, tooSmall: 0, nonPositiveArea: 0, outsideImage: 0, otherCategory: 0 });

  // Image 433998: 16 boxes and one crowd of people; its first record is
  // person [315.59, 188.55, 72.63, 155.57] in xywh.
  const index = [...Array(dataset.length).keys()].find((i) => dataset.imageInfo(i).id === 433998)!;
  const info = dataset.annotationInfo(index)!;
  t.is(info.labels.length, 16);
  t.deepEqual([...info.boxes.subarray(0, 4)].map((v) => Number(v.toFixed(2))), [315.59, 188.55, 388.22, 344.12]);
  t.deepEqual([...info.labels.subarray(0, 6)], [0, 0, 0, 0, 0, 35]);
  t.deepEqual([...info.ignoredBoxes], [232, 92, 347, 113]);
});

test.serial('dropped annotations logged once', async (t) => {
  const { result: dataset, lines } = await captureLog(() => new CocoDataset({ annFile: join(folder, 'hand.json'), imgPrefix: folder }));
  const dropLines = lines.filter((line) => line.includes('dropped'));
  t.is(dropLines.length, 1);
  t.true(
    dropLines[0]!.endsWith(`${join(folder, 'hand.json')}: dropped 3 annotations: 2 with width or height below 1 pixel, 1 outside the image`),
    dropLines[0],
  );
  t.deepEqual(dataset.dropCounts, { ignoreFlag: 0, tooSmall: 2, nonPositiveArea: 0, outsideImage: 1, otherCategory: 0 });
});

test.serial('training skips empty and small images', async (t) => {
  const { result: dataset, lines } = await captureLog(() => new CocoDataset({ annFile: join(folder, 'hand.json'), imgPrefix: folder }));
  t.is(dataset.length, 1);
  t.is(dataset.imageInfo(0).id, 1);
  t.deepEqual(dataset.skippedImages, { noUsableBox: 1, tooSmall: 1 });
  t.true(lines.some((line) => line.includes('skipped 1 images without a usable box and 1 smaller than 32 px')));

  // Labels follow ascending category id: car (3) is 0, truck (7) is 1.
  t.deepEqual(dataset.classes, ['car', 'truck']);
  const info = dataset.annotationInfo(0)!;
  // Boxes keep their file order; a box that crosses the border is kept unclipped.
  t.deepEqual([...info.boxes], [10, 10, 30, 30, 90, 70, 120, 100]);
  t.deepEqual([...info.labels], [1, 0]);
  t.deepEqual([...info.ignoredBoxes], [50, 40, 80, 70]);
});

test('filterEmptyGt false keeps crowd-only image', (t) => {
  const dataset = new CocoDataset({ annFile: join(folder, 'hand.json'), imgPrefix: folder, filterEmptyGt: false });
  t.deepEqual([...Array(dataset.length).keys()].map((i) => dataset.imageInfo(i).id), [1, 2]);
  t.deepEqual([...dataset.annotationInfo(1)!.ignoredBoxes], [5, 5, 15, 15]);
  t.is(dataset.annotationInfo(1)!.labels.length, 0);
});

test('test mode keeps every image', (t) => {
  const dataset = new CocoDataset({ annFile: join(folder, 'hand.json'), imgPrefix: folder, testMode: true });
  t.is(dataset.length, 3);
  t.deepEqual(dataset.skippedImages, { noUsableBox: 0, tooSmall: 0 });
});

test('classes subset sets label order', (t) => {
  const dataset = new CocoDataset({ annFile: join(folder, 'hand.json'), imgPrefix: folder, classes: ['truck'] });
  t.deepEqual(dataset.catIds, [7]);
  t.is(dataset.length, 1);
  t.deepEqual([...dataset.annotationInfo(0)!.labels], [0]);
  t.deepEqual([...dataset.annotationInfo(0)!.boxes], [10, 10, 30, 30]);
  // Car annotations 14, 15, 16 and 17; 10, 11 and 12 were dropped before the category check.
  t.is(dataset.dropCounts.otherCategory, 4);
});

test('unknown class name suggests closest', (t) => {
  const error = t.throws(() => new CocoDataset({ annFile: join(folder, 'hand.json'), classes: ['car', 'truk'] }), {
    instanceOf: ConfigError,
  });
  t.is(error?.message, `CocoDataset.classes[1]: 'truk' is not a category of ${join(folder, 'hand.json')} (closest: 'truck')`);
});

test('unknown option is rejected', (t) => {
  const error = t.throws(() => DATASETS.build({ type: 'CocoDataset', annFile: MINI_ANN, img_prefix: 'x' }), {
    instanceOf: ConfigError,
  });
  t.regex(error?.message ?? '', /^CocoDataset: unknown option 'img_prefix' \(did you mean 'imgPrefix'\?\)/);
});

test.serial('size mismatch scales boxes and warns', async (t) => {
  // The annotation file gives 80 x 60 (width x height), but the PNG on disk is 40 x 30.
  const sub = await mkdtemp(join(folder, 'mismatch-'));
  await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 9, g: 8, b: 7 } } })
    .png()
    .toFile(join(sub, 'small.png'));
  const annFile = join(sub, 'mismatch.json');
  await writeFile(
    annFile,
    JSON.stringify({
      images: [{ id: 7, file_name: 'small.png', width: 80, height: 60 }],
      annotations: [
        { id: 1, image_id: 7, category_id: 1, bbox: [8, 6, 40, 30], area: 1200, iscrowd: 0 },
        { id: 2, image_id: 7, category_id: 1, bbox: [0, 0, 20, 20], area: 400, iscrowd: 1 },
      ],
      categories: [{ id: 1, name: 'thing' }],
    }),
  );
  const dataset = new CocoDataset({
    annFile,
    imgPrefix: sub,
    pipeline: [{ type: 'LoadImageFromFile' }, { type: 'LoadAnnotations' }],
  });
  const { result: sample, lines } = await captureLog(() => dataset.getItem(0, context()));
  t.deepEqual(sample.originalShape, [30, 40]);
  t.deepEqual([...sample.boxes!], [4, 3, 24, 18]);
  t.deepEqual([...sample.ignoredBoxes!], [0, 0, 10, 10]);
  // The dataset's own arrays stay in annotation-file coordinates.
  t.deepEqual([...dataset.annotationInfo(0)!.boxes], [8, 6, 48, 36]);
  const warnings = lines.filter((line) => line.includes('WARN'));
  t.is(warnings.length, 1);
  t.true(
    warnings[0]!.endsWith(
      `image ${join(sub, 'small.png')} (image id 7) decodes to 40 x 30 (width x height) but the annotation file says 80 x 60; ` +
        'its boxes are scaled to the decoded size',
    ),
    warnings[0],
  );

  // Annotations loaded before the image are scaled the same way.
  const reversed = new CocoDataset({ annFile, imgPrefix: sub, pipeline: [{ type: 'LoadAnnotations' }, { type: 'LoadImageFromFile' }] });
  t.deepEqual([...(await reversed.getItem(0, context())).boxes!], [4, 3, 24, 18]);
});

test('missing image names file and id', async (t) => {
  const dataset = new CocoDataset({
    annFile: join(folder, 'hand.json'),
    imgPrefix: folder,
    pipeline: [{ type: 'LoadImageFromFile' }],
  });
  const error = await t.throwsAsync(dataset.getItem(0, context()));
  t.is(error?.message, `image file ${join(folder, 'one.png')} (image id 1) not found`);
});

test('pipeline option error names position', (t) => {
  const error = t.throws(
    () => new CocoDataset({ annFile: MINI_ANN, pipeline: [{ type: 'LoadImageFromFile' }, { type: 'Resize', keep_ratio: true } as never] }),
    { instanceOf: ConfigError },
  );
  t.regex(error?.message ?? '', /^CocoDataset\.pipeline\[1\]: Resize: unknown option 'keep_ratio' \(did you mean 'keepRatio'\?\)/);
});

test('describeDrops lists only nonzero reasons', (t) => {
  const none = { ignoreFlag: 0, tooSmall: 0, nonPositiveArea: 0, outsideImage: 0, otherCategory: 4 };
  t.is(describeDrops(none), undefined);
  t.is(
    describeDrops({ ...none, nonPositiveArea: 1, ignoreFlag: 2, outsideImage: 3 }),
    "dropped 6 annotations: 1 with area 0 or less, 3 outside the image, 2 marked 'ignore'",
  );
});
