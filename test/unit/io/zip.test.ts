import test from 'ava';

import { CheckpointError } from '../../../src/utils/errors.ts';
import { ZipArchive, looksLikeZip } from '../../../src/io/zip.ts';
import { buildZip } from './zip_builder.ts';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

test('stored and deflated entries read back', (t) => {
  const long = 'weights '.repeat(200);
  const bytes = buildZip([
    { name: 'archive/data.pkl', data: 'pickle bytes' },
    { name: 'archive/data/0', data: long, method: 8 },
    { name: 'archive/empty', data: '' },
  ]);
  t.true(looksLikeZip(bytes));
  const archive = new ZipArchive(bytes, 'test.zip');
  t.deepEqual(
    archive.entries.map((entry) => [entry.name, entry.method, entry.uncompressedSize]),
    [
      ['archive/data.pkl', 0, 12],
      ['archive/data/0', 8, long.length],
      ['archive/empty', 0, 0],
    ],
  );
  const pickle = archive.read(archive.get('archive/data.pkl')!);
  t.is(text(pickle), 'pickle bytes');
  // A stored entry is a view into the archive, not a copy.
  t.is(pickle.buffer, bytes.buffer);
  t.is(pickle.byteOffset, 30 + 'archive/data.pkl'.length);
  t.true(archive.entries[1]!.compressedSize < long.length);
  t.is(text(archive.read(archive.get('archive/data/0')!)), long);
  t.is(archive.read(archive.get('archive/empty')!).length, 0);
});

test('ZIP64 records and a comment parse', (t) => {
  const bytes = buildZip(
    [
      { name: 'a.bin', data: new Uint8Array([1, 2, 3]) },
      { name: 'b.bin', data: new Uint8Array([4, 5]) },
    ],
    { zip64: true, comment: 'written by a test' },
  );
  const archive = new ZipArchive(bytes, 'zip64.zip');
  t.deepEqual(
    archive.entries.map((entry) => [entry.name, entry.compressedSize, entry.uncompressedSize, entry.localHeaderOffset]),
    [
      ['a.bin', 3, 3, 0],
      ['b.bin', 2, 2, 38],
    ],
  );
  t.deepEqual([...archive.read(archive.get('b.bin')!)], [4, 5]);
});

test('truncated archives are rejected by name', (t) => {
  const bytes = buildZip([{ name: 'x/data.pkl', data: 'abcdefgh' }]);
  for (const length of [bytes.length - 1, Math.floor(bytes.length / 2), 10, 0]) {
    const error = t.throws(() => new ZipArchive(bytes.subarray(0, length), 'cut.zip'), { instanceOf: CheckpointError });
    t.is(
      error?.message,
      'cut.zip: invalid zip archive: end of central directory record not found (the file is truncated or is not a zip archive)',
      `length ${length}`,
    );
  }
});

test('entry past the end is reported', (t) => {
  const bytes = buildZip([{ name: 'x/data/0', data: new Uint8Array(64) }]);
  const archive = new ZipArchive(bytes, 'short.zip');
  // Claim a larger entry than the file holds.
  const entry = { ...archive.entries[0]!, compressedSize: 4096, uncompressedSize: 4096 };
  t.throws(() => archive.read(entry), {
    instanceOf: CheckpointError,
    message: `short.zip: invalid zip archive: entry 'x/data/0' needs bytes up to ${30 + 8 + 4096} but the file has ${bytes.length} (truncated?)`,
  });
});

test('CRC-32 mismatch is found when checked', (t) => {
  const bytes = buildZip([{ name: 'x/data/0', data: new Uint8Array([9, 9, 9, 9]) }]);
  bytes[30 + 'x/data/0'.length] = 8;
  const archive = new ZipArchive(bytes, 'flipped.zip');
  const entry = archive.get('x/data/0')!;
  t.throws(() => archive.read(entry), { instanceOf: CheckpointError, message: "flipped.zip: entry 'x/data/0' fails its CRC-32 check (the file is corrupt)" });
  t.deepEqual([...archive.read(entry, false)], [8, 9, 9, 9]);
});

test('unsupported method and encryption are named', (t) => {
  const bzip = new ZipArchive(buildZip([{ name: 'a', data: 'x', method: 12 }]), 'bzip.zip');
  t.throws(() => bzip.read(bzip.entries[0]!), {
    message: "bzip.zip: invalid zip archive: entry 'a' uses compression method 12; only 0 (stored) and 8 (deflate) are supported",
  });
  const locked = new ZipArchive(buildZip([{ name: 'a', data: 'x', flags: 1 }]), 'locked.zip');
  t.throws(() => locked.read(locked.entries[0]!), { message: "locked.zip: invalid zip archive: entry 'a' is encrypted" });
});

test('non-zip bytes are not taken for a zip', (t) => {
  t.false(looksLikeZip(new TextEncoder().encode('{"a": 1}')));
  t.false(looksLikeZip(new Uint8Array([0x50, 0x4b])));
  t.true(looksLikeZip(buildZip([])));
});
