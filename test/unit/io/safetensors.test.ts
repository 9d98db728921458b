import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  decodeSafetensors,
  encodeSafetensors,
  float16ToNumber,
  readSafetensors,
  toFloat32Array,
  writeSafetensors,
  type SafetensorsTensor,
} from '../../../src/io/safetensors.ts';
import { CheckpointError } from '../../../src/utils/errors.ts';

const FIXTURE = new URL('../../fixtures/rla/backbone.safetensors', import.meta.url).pathname;

/** Builds a safetensors file from a header object and raw data bytes, without padding. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const bytes = new Uint8Array(8 + json.length + data.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(json, 8);
  bytes.set(data, 8 + json.length);
  return bytes;
}

test('round trip keeps every dtype', (t) => {
  const tensors = new Map<string, SafetensorsTensor>([
    ['weights', { dtype: 'F32', shape: [2, 3], data: new Float32Array([1.5, -2, 0, 3.25, 1e-30, -7]) }],
    ['double', { dtype: 'F64', shape: [2], data: new Float64Array([Math.PI, -1e300]) }],
    ['steps', { dtype: 'I64', shape: [], data: new BigInt64Array([-(2n ** 40n)]) }],
    ['labels', { dtype: 'I32', shape: [3], data: new Int32Array([0, -5, 2147483647]) }],
    ['half', { dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0xc000]) }],
    ['mask', { dtype: 'BOOL', shape: [4], data: new Uint8Array([1, 0, 0, 1]) }],
    ['pixels', { dtype: 'U8', shape: [1, 3], data: new Uint8Array([0, 128, 255]) }],
    ['empty', { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }],
  ]);
  const bytes = encodeSafetensors(tensors, { format: 'pt', note: 'unit test' });
  const decoded = decodeSafetensors(bytes, 'round-trip');

  t.deepEqual(decoded.metadata, { format: 'pt', note: 'unit test' });
  t.is(decoded.tensors.size, tensors.size);
  for (const [name, tensor] of tensors) {
    const read = decoded.tensors.get(name);
    t.truthy(read, name);
    t.is(read!.dtype, tensor.dtype, name);
    t.deepEqual(read!.shape, tensor.shape, name);
    t.is(read!.data.constructor, tensor.data.constructor, name);
    t.deepEqual([...read!.data], [...tensor.data], name);
  }
});

test('encoder pads header and aligns data', (t) => {
  const bytes = encodeSafetensors({
    byte: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
    wide: { dtype: 'F64', shape: [1], data: new Float64Array([2]) },
    word: { dtype: 'F32', shape: [1], data: new Float32Array([1]) },
  });
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  t.is(headerLength % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, { data_offsets: number[] }>;
  // Larger elements first, so each tensor starts at a multiple of its element size.
  t.deepEqual(header['wide']!.data_offsets, [0, 8]);
  t.deepEqual(header['word']!.data_offsets, [8, 12]);
  t.deepEqual(header['byte']!.data_offsets, [12, 15]);
  t.is(bytes.length, 8 + headerLength + 15);
});

test('re-encoding reference file gives identical bytes', async (t) => {
  const original = await readFile(FIXTURE);
  const { tensors, metadata } = decodeSafetensors(original, FIXTURE);
  t.is(tensors.size, 109);
  t.is(metadata['layout'], 'PyTorch (OIHW conv weights)');
  const conv1 = tensors.get('conv1.weight')!;
  t.is(conv1.dtype, 'F32');
  t.deepEqual(conv1.shape, [64, 3, 7, 7]);
  t.true(Buffer.from(encodeSafetensors(tensors, metadata)).equals(original));
});

test('float16 decoding covers special values', (t) => {
  t.is(float16ToNumber(0x3c00), 1);
  t.is(float16ToNumber(0xc000), -2);
  t.is(float16ToNumber(0x7bff), 65504);
  t.is(float16ToNumber(0x0001), 2 ** -24);
  t.is(float16ToNumber(0x3555), 0.333251953125);
  t.is(float16ToNumber(0x7c00), Infinity);
  t.is(float16ToNumber(0xfc00), -Infinity);
  t.true(Number.isNaN(float16ToNumber(0x7e00)));
  t.true(Object.is(float16ToNumber(0x8000), -0));
});

test('toFloat32Array converts each numeric dtype', (t) => {
  const cases: Array<[SafetensorsTensor, number[]]> = [
    [{ dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x3800]) }, [1, -2, 0.5]],
    [{ dtype: 'BF16', shape: [3], data: new Uint16Array([0x3f80, 0xc040, 0x4049]) }, [1, -3, 3.140625]],
    [{ dtype: 'F64', shape: [2], data: new Float64Array([0.25, -8]) }, [0.25, -8]],
    [{ dtype: 'I64', shape: [2], data: new BigInt64Array([-3n, 1000n]) }, [-3, 1000]],
    [{ dtype: 'I32', shape: [1], data: new Int32Array([-7]) }, [-7]],
    [{ dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) }, [1, 0]],
  ];
  for (const [tensor, expected] of cases) {
    const values = toFloat32Array(tensor);
    t.true(values instanceof Float32Array, tensor.dtype);
    t.deepEqual([...values], expected, tensor.dtype);
  }
});

test('decoder reads unpadded little-endian data', (t) => {
  const data = new Uint8Array([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x00]);
  const bytes = rawFile(
    {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'I32', shape: [1], data_offsets: [8, 12] },
    },
    data,
  );
  const { tensors, metadata } = decodeSafetensors(bytes);
  t.deepEqual(metadata, {});
  t.deepEqual([...tensors.get('a')!.data], [1, -2]);
  t.deepEqual([...tensors.get('b')!.data], [1]);
});

test('decoder rejects malformed files', (t) => {
  const f32 = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
  const four = new Uint8Array(4);
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['too short', new Uint8Array(5), /has 5 bytes, fewer than the 8-byte header length/],
    ['header past end', (() => {
      const bytes = rawFile({ a: f32 }, four);
      new DataView(bytes.buffer).setBigUint64(0, 10_000n, true);
      return bytes;
    })(), /header length 10000 exceeds the file size/],
    ['not JSON', (() => {
      const bytes = rawFile({ a: f32 }, four);
      bytes[8] = 0x7e;
      return bytes;
    })(), /header is not valid UTF-8 JSON/],
    ['array header', rawFile([1, 2]), /header is not a JSON object/],
    ['unknown dtype', rawFile({ a: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, four), /tensor 'a' has dtype "F8_E4M3"; supported: F64, F32/],
    ['bad shape', rawFile({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, four), /tensor 'a' has shape \[-1\]/],
    ['size mismatch', rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, four), /tensor 'a' \(F32 \[2\]\) needs 8 bytes but data_offsets \[0, 4\] hold 4/],
    ['overlap', rawFile({ a: f32, b: f32 }, new Uint8Array(8)), /tensor '[ab]' starts at data offset 0 and overlaps the previous tensor/],
    ['gap', rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)), /starts at data offset 4 and leaves a gap/],
    ['trailing bytes', rawFile({ a: f32 }, new Uint8Array(6)), /the tensors cover 4 data bytes but the file has 6 after the header/],
    ['metadata value', rawFile({ __metadata__: { epoch: 3 }, a: f32 }, four), /'__metadata__.epoch' must be a string, found 3/],
  ];
  for (const [name, bytes, message] of cases) {
    const error = t.throws(() => decodeSafetensors(bytes, 'bad.safetensors'), { instanceOf: CheckpointError }, name);
    t.regex(error?.message ?? '', /^bad\.safetensors: invalid safetensors file: /, name);
    t.regex(error?.message ?? '', message, name);
  }
});

test('encoder rejects data of the wrong size', (t) => {
  t.throws(() => encodeSafetensors({ a: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }), {
    message: "safetensors: tensor 'a' (F32 [2, 2]) needs 16 bytes of data, got 12",
  });
});

test('write then read through the file system', async (t) => {
  const folder = await mkdtemp(join(tmpdir(), 'rladet-safetensors-'));
  try {
    const path = join(folder, 'weights.safetensors');
    await writeSafetensors(path, { w: { dtype: 'F32', shape: [2], data: new Float32Array([4, 5]) } }, { epoch: '2' });
    const { tensors, metadata } = await readSafetensors(path);
    t.deepEqual([...tensors.get('w')!.data], [4, 5]);
    t.deepEqual(metadata, { epoch: '2' });

    const missing = join(folder, 'missing.safetensors');
    const error = await t.throwsAsync(readSafetensors(missing), { instanceOf: CheckpointError });
    t.true(error?.message.startsWith(`${missing}: cannot read safetensors file:`));
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});
