import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import test from 'ava';

import { parseCocoJson, readCocoFile } from '../../../src/datasets/coco_json.ts';
import { DataError } from '../../../src/utils/errors.ts';

function validCoco(): Record<string, unknown> {
  return {
    images: [{ id: 1, file_name: 'a.jpg', width: 100, height: 80 }],
    annotations: [{ id: 5, image_id: 1, category_id: 3, bbox: [1, 2, 30, 40], area: 1200, iscrowd: 0 }],
    categories: [{ id: 3, name: 'car' }],
  };
}

function expectError(json: unknown, message: string): (t: import('ava').ExecutionContext) => void {
  return (t) => {
    const error = t.throws(() => parseCocoJson(json, 'instances.json'), { instanceOf: DataError });
    t.is(error?.message, message);
  };
}

test('valid file parses to records', (t) => {
  const coco = parseCocoJson(validCoco(), 'instances.json');
  t.deepEqual(coco.images, [{ id: 1, fileName: 'a.jpg', width: 100, height: 80 }]);
  t.deepEqual(coco.annotations, [
    { imageId: 1, categoryId: 3, bboxXywh: [1, 2, 30, 40], area: 1200, iscrowd: false, ignore: false },
  ]);
  t.deepEqual(coco.categories, [{ id: 3, name: 'car' }]);
  t.true(coco.hasAnnotations);
});

for (const key of ['images', 'annotations', 'categories']) {
  const json = validCoco();
  delete json[key];
  test(`missing ${key} is named`, expectError(json, `instances.json: missing '${key}' (not a COCO instance annotation file?)`));
}

test('annotations optional for image-info files', (t) => {
  const json = validCoco();
  delete json['annotations'];
  const coco = parseCocoJson(json, 'image_info.json', { requireAnnotations: false });
  t.false(coco.hasAnnotations);
  t.deepEqual(coco.annotations, []);
});

{
  const json = validCoco();
  const annotations = [0, 1, 2].map((i) => ({ id: i, image_id: 1, category_id: 3, bbox: [0, 0, 5, 5] })) as Array<
    Record<string, unknown>
  >;
  delete annotations[2]!['bbox'];
  json['annotations'] = annotations;
  test('annotation without bbox is named', expectError(json, "instances.json: annotations[2]: missing 'bbox'"));
}

{
  const json = validCoco();
  (json['annotations'] as Array<Record<string, unknown>>)[0]!['bbox'] = [1, 2, 3];
  test(
    'short bbox is a type error',
    expectError(json, 'instances.json: annotations[0].bbox: expected [x, y, width, height] with 4 finite numbers, got an array of 3'),
  );
}

{
  const json = validCoco();
  (json['images'] as Array<Record<string, unknown>>)[0]!['width'] = '100';
  test('string width is a type error', expectError(json, 'instances.json: images[0].width: expected a positive number, got the string "100"'));
}

{
  const json = validCoco();
  (json['annotations'] as Array<Record<string, unknown>>)[0]!['iscrowd'] = 2;
  test('iscrowd 2 is rejected', expectError(json, 'instances.json: annotations[0].iscrowd: expected 0, 1, true or false, got number 2'));
}

{
  const json = validCoco();
  (json['annotations'] as Array<Record<string, unknown>>)[0]!['category_id'] = 4;
  test(
    'unknown category id is named',
    expectError(json, "instances.json: annotations[0].category_id: 4 is not the id of any entry in 'categories'"),
  );
}

{
  const json = validCoco();
  (json['annotations'] as Array<Record<string, unknown>>)[0]!['image_id'] = 2;
  test('unknown image id is named', expectError(json, "instances.json: annotations[0].image_id: 2 is not the id of any entry in 'images'"));
}

{
  const json = validCoco();
  (json['images'] as unknown[]).push({ id: 1, file_name: 'b.jpg', width: 10, height: 10 });
  test('duplicate image id is named', expectError(json, 'instances.json: images[1].id: 1 is already used by images[0]'));
}

test('images not a list is named', expectError({ ...validCoco(), images: {} }, "instances.json: 'images' must be an array, got an object"));

test('top-level array is rejected', expectError([1, 2], 'instances.json: expected a COCO JSON object at the top level, got an array of 2'));

test('file errors name the file', async (t) => {
  const folder = await mkdtemp(join(tmpdir(), 'rladet-coco-json-'));
  try {
    const missing = join(folder, 'missing.json');
    t.is(t.throws(() => readCocoFile(missing), { instanceOf: DataError })?.message, `annotation file ${missing}: file not found`);

    const broken = join(folder, 'broken.json');
    await writeFile(broken, '{"images": [');
    t.regex(
      t.throws(() => readCocoFile(broken), { instanceOf: DataError })?.message ?? '',
      new RegExp(`^annotation file ${broken}: invalid JSON: `),
    );
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test('gzip annotation file reads as plain', async (t) => {
  const folder = await mkdtemp(join(tmpdir(), 'rladet-coco-json-'));
  try {
    const text = await readFile('data/coco-mini/annotations/instances_train2017.json');
    const compressed = join(folder, 'instances.json.gz');
    await writeFile(compressed, gzipSync(text));
    const plain = readCocoFile('data/coco-mini/annotations/instances_train2017.json');
    const fromGzip = readCocoFile(compressed);
    t.is(fromGzip.images.length, 26);
    t.deepEqual(fromGzip, plain);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});
