import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import test from 'ava';

import { JsonChunkParser, readJsonFile, readJsonFileAsync } from '../../../src/coco/index.ts';
import { DataError } from '../../../src/utils/errors.ts';

const FIXTURES = new URL('../../fixtures/coco/', import.meta.url).pathname;

function parseInChunks(text: string | Uint8Array, chunkSize: number, batchBytes = 16): unknown {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const parser = new JsonChunkParser('doc.json', { batchBytes });
  for (let start = 0; start < bytes.length; start += chunkSize) parser.push(bytes.subarray(start, start + chunkSize));
  return parser.end();
}

const documents = [
  '{}',
  '[]',
  ' [1, 2.5e3, -0, true, null, "x"] ',
  '{"images": [], "annotations": [{"id": 1}], "info": {"a": [1, {"b": "]}"}]}}',
  '{"k\\"ey": [{"s": "a\\\\"}, {"s": "\\"[{,"}], "n": 12, "t": "tail"}',
  '[{"name": "pérsøn ✓ 人"}, {"counts": "P_m81o>001O1O00"}, [[1, 2], [3]], {}]',
  '\ufeff{"bom": [1]}',
  '{"nested": {"deep": [[[]]]}, "list": [[], [[]], {}], "last": []}',
];

for (const [index, text] of documents.entries()) {
  test(`chunk parser equals JSON.parse, document ${index}`, (t) => {
    const expected: unknown = JSON.parse(text.replace(/^\ufeff/, ''));
    for (const chunkSize of [1, 2, 3, 7, 64, 1 << 20]) {
      for (const batchBytes of [1, 16, 1 << 20]) {
        t.deepEqual(parseInChunks(text, chunkSize, batchBytes), expected, `chunk ${chunkSize}, batch ${batchBytes}`);
      }
    }
  });
}

test('chunk parser reads fixture files', (t) => {
  for (const name of ['dev40_gt.json', 'dev40_dt_bbox.json']) {
    const bytes = readFileSync(FIXTURES + name);
    const expected: unknown = JSON.parse(bytes.toString('utf8'));
    t.deepEqual(parseInChunks(bytes, 65536, 4096), expected, name);
    t.deepEqual(parseInChunks(bytes, 1000, 1 << 22), expected, name);
  }
});

test('truncated document is rejected', (t) => {
  for (const text of ['{"images": [{"id": 1}', '[1, 2', '{"a": "unterminated', '{"a"', '']) {
    t.throws(() => parseInChunks(text, 3), {
      instanceOf: DataError,
      message: `doc.json: invalid JSON: the data ends at byte ${Buffer.byteLength(text)} before the document is complete`,
    });
  }
});

test('malformed documents name the byte', (t) => {
  const cases: Array<[string, string]> = [
    ['{"a": [1,]}', "doc.json: invalid JSON near byte 9: expected a value after ',', found ']'"],
    ['[1] x', 'doc.json: invalid JSON near byte 4: unexpected "x" after the end of the JSON document'],
    ['42', 'doc.json: invalid JSON near byte 0: expected a JSON object or array, found "4"'],
    ['{a: 1}', 'doc.json: invalid JSON near byte 1: expected a member name in double quotes, found "a"'],
    ['{"a" 1}', `doc.json: invalid JSON near byte 5: expected ':' after member name "a", found "1"`],
    ['{"a": [1] "b": 2}', `doc.json: invalid JSON near byte 10: expected ',' or '}' after member "a", found "\\""`],
    ['{"a": [1}', "doc.json: invalid JSON near byte 8: unexpected '}' in an array"],
  ];
  for (const [text, message] of cases) {
    t.throws(() => parseInChunks(text, 1 << 20), { instanceOf: DataError, message }, text);
  }
});

test('invalid element reports JSON.parse error', (t) => {
  const error = t.throws(() => parseInChunks('[{"a": 1}, {"a": tru}]', 1 << 20, 1), { instanceOf: DataError });
  t.regex(error.message, /^doc\.json: invalid JSON near byte 21: /);
});

function withTempDir(run: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rladet-json-'));
    try {
      await run(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test('file readers agree on plain and gzip files', async (t) => {
  await withTempDir(async (dir) => {
    const bytes = readFileSync(FIXTURES + 'dev40_gt.json');
    const expected: unknown = JSON.parse(bytes.toString('utf8'));
    writeFileSync(join(dir, 'gt.json'), bytes);
    writeFileSync(join(dir, 'gt.json.gz'), gzipSync(bytes));
    for (const name of ['gt.json', 'gt.json.gz']) {
      const path = join(dir, name);
      t.deepEqual(readJsonFile(path), expected, `${name} whole`);
      t.deepEqual(readJsonFile(path, { wholeParseLimitBytes: 1000 }), expected, `${name} in chunks`);
      // Small chunks through one reused read buffer: the parser must copy what it keeps.
      t.deepEqual(readJsonFile(path, { wholeParseLimitBytes: 1000, chunkBytes: 777 }), expected, `${name} in 777-byte chunks`);
      t.deepEqual(await readJsonFileAsync(path), expected, `${name} streamed`);
    }
  })();
});

test('file readers reject broken files', async (t) => {
  await withTempDir(async (dir) => {
    const truncated = join(dir, 'truncated.json');
    writeFileSync(truncated, '{"images": [{"id": 1}, {"id"');
    t.throws(() => readJsonFile(truncated, { wholeParseLimitBytes: 10 }), {
      instanceOf: DataError,
      message: `${truncated}: invalid JSON: the data ends at byte 28 before the document is complete`,
    });
    await t.throwsAsync(readJsonFileAsync(truncated), {
      instanceOf: DataError,
      message: `${truncated}: invalid JSON: the data ends at byte 28 before the document is complete`,
    });

    const badGzip = join(dir, 'bad.json.gz');
    writeFileSync(badGzip, Buffer.concat([gzipSync(Buffer.from('{"images": []}')).subarray(0, 12)]));
    t.throws(() => readJsonFile(badGzip), { instanceOf: DataError, message: /^.*bad\.json\.gz: invalid gzip data: / });
    await t.throwsAsync(readJsonFileAsync(badGzip), { instanceOf: DataError, message: /^.*bad\.json\.gz: / });
  })();
});
