import { readFile } from 'node:fs/promises';

import { CheckpointError } from '../utils/errors.ts';
import { writeFileAtomic } from '../utils/fs.ts';

/**
 * Reader and writer of the safetensors format (https://github.com/huggingface/safetensors):
 * an unsigned 64-bit little-endian header length N, N bytes of UTF-8 JSON, then the raw
 * little-endian, C-order bytes of every tensor. The JSON maps each tensor name to
 * `{dtype, shape, data_offsets: [begin, end)}`, with offsets relative to the first byte after
 * the header, and may hold a `__metadata__` map from strings to strings.
 */

/** Element types this module reads and writes, with their size in bytes. */
export const DTYPE_BYTES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
} as const;

export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

/**
 * Element storage of one tensor. F16 and BF16 elements are kept as their raw 16-bit patterns
 * in a Uint16Array (use `toFloat32Array` to decode them), and BOOL as 0 or 1 bytes.
 */
export type SafetensorsData =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

/** One named tensor of a safetensors file. */
export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: SafetensorsData;
}

export interface SafetensorsContents {
  /** Tensors in the order of their data in the file. */
  tensors: Map<string, SafetensorsTensor>;
  /** The `__metadata__` string map; empty when the file has none. */
  metadata: Record<string, string>;
}

/**
 * Upper bound on the JSON header, the same 100 MB limit as the reference implementation; a
 * larger length field means a corrupt or foreign file.
 */
const MAX_HEADER_BYTES = 100_000_000;

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.hasOwn(DTYPE_BYTES, value);
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

/** Copies `bytes` into a new, aligned typed array of the dtype's element type. */
function bytesToElements(dtype: SafetensorsDtype, bytes: Uint8Array): SafetensorsData {
  // new Uint8Array(view) copies; Buffer.slice would return a view into Node's shared pool.
  const copy = new Uint8Array(bytes);
  if (!HOST_IS_LITTLE_ENDIAN && DTYPE_BYTES[dtype] > 1) swapByteOrder(copy, DTYPE_BYTES[dtype]);
  const buffer = copy.buffer;
  switch (dtype) {
    case 'F64':
      return new Float64Array(buffer);
    case 'F32':
      return new Float32Array(buffer);
    case 'F16':
    case 'BF16':
    case 'U16':
      return new Uint16Array(buffer);
    case 'I64':
      return new BigInt64Array(buffer);
    case 'U64':
      return new BigUint64Array(buffer);
    case 'I32':
      return new Int32Array(buffer);
    case 'U32':
      return new Uint32Array(buffer);
    case 'I16':
      return new Int16Array(buffer);
    case 'I8':
      return new Int8Array(buffer);
    case 'U8':
    case 'BOOL':
      return copy;
  }
}

/** Reverses the bytes of every element in place (only needed on big-endian hosts). */
function swapByteOrder(bytes: Uint8Array, elementBytes: number): void {
  for (let start = 0; start < bytes.length; start += elementBytes) {
    bytes.subarray(start, start + elementBytes).reverse();
  }
}

function headerError(source: string, detail: string): CheckpointError {
  return new CheckpointError(`${source}: invalid safetensors file: ${detail}`);
}

/**
 * Parses a safetensors file held in memory. `source` names the file in error messages.
 * Throws a CheckpointError when the header is malformed, a dtype is unknown, a tensor's byte
 * range does not match its shape, or the ranges overlap or leave gaps in the data section.
 */
export function decodeSafetensors(bytes: Uint8Array, source = '<buffer>'): SafetensorsContents {
  if (bytes.length < 8) throw headerError(source, `file has ${bytes.length} bytes, fewer than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, bytes.length - 8))) {
    throw headerError(source, `header length ${headerLength} exceeds the file size (${bytes.length} bytes; truncated file?) or the 100 MB limit`);
  }
  const dataStart = 8 + Number(headerLength);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart)));
  } catch (error) {
    throw headerError(source, `header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw headerError(source, 'header is not a JSON object');
  }

  const metadata = parseMetadata((header as Record<string, unknown>)['__metadata__'], source);
  const entries: Array<{ name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }> = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    entries.push({ name, ...parseEntry(name, entry, source) });
  }

  // The reference implementation requires the byte ranges to tile the data section exactly.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expectedBegin = 0;
  for (const entry of entries) {
    if (entry.begin !== expectedBegin) {
      const problem = entry.begin < expectedBegin ? 'overlaps the previous tensor' : 'leaves a gap after the previous tensor';
      throw headerError(source, `tensor '${entry.name}' starts at data offset ${entry.begin} and ${problem} (which ends at ${expectedBegin})`);
    }
    expectedBegin = entry.end;
  }
  const dataLength = bytes.length - dataStart;
  if (expectedBegin !== dataLength) {
    const hint = dataLength < expectedBegin ? ' (truncated file?)' : '';
    throw headerError(source, `the tensors cover ${expectedBegin} data bytes but the file has ${dataLength} after the header${hint}`);
  }

  const tensors = new Map<string, SafetensorsTensor>();
  for (const { name, dtype, shape, begin, end } of entries) {
    tensors.set(name, { dtype, shape, data: bytesToElements(dtype, bytes.subarray(dataStart + begin, dataStart + end)) });
  }
  return { tensors, metadata };
}

function parseMetadata(value: unknown, source: string): Record<string, string> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw headerError(source, `'__metadata__' must be an object of strings, found ${JSON.stringify(value)}`);
  }
  const metadata: Record<string, string> = {};
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== 'string') {
      throw headerError(source, `'__metadata__.${key}' must be a string, found ${JSON.stringify(item)}`);
    }
    metadata[key] = item;
  }
  return metadata;
}

function parseEntry(name: string, entry: unknown, source: string): { dtype: SafetensorsDtype; shape: number[]; begin: number; end: number } {
  if (entry === null || typeof entry !== 'object') throw headerError(source, `tensor '${name}' is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (!isDtype(dtype)) {
    throw headerError(source, `tensor '${name}' has dtype ${JSON.stringify(dtype)}; supported: ${Object.keys(DTYPE_BYTES).join(', ')}`);
  }
  if (!Array.isArray(shape) || !shape.every((size) => Number.isSafeInteger(size) && size >= 0)) {
    throw headerError(source, `tensor '${name}' has shape ${JSON.stringify(shape)}, expected a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0)) {
    throw headerError(source, `tensor '${name}' has data_offsets ${JSON.stringify(offsets)}, expected [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  const expectedBytes = elementCount(shape as number[]) * DTYPE_BYTES[dtype];
  if (end - begin !== expectedBytes) {
    throw headerError(
      source,
      `tensor '${name}' (${dtype} [${shape.join(', ')}]) needs ${expectedBytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return { dtype, shape: shape as number[], begin, end };
}

/** Reads and parses a safetensors file; read errors become CheckpointErrors naming the path. */
export async function readSafetensors(path: string): Promise<SafetensorsContents> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new CheckpointError(`${path}: cannot read safetensors file: ${(error as Error).message}`, { cause: error });
  }
  return decodeSafetensors(bytes, path);
}

/**
 * Serialises tensors to the safetensors format. Data is laid out by decreasing element size,
 * then by name, and the header is padded with spaces to a multiple of 8 bytes, so every tensor
 * starts at an offset aligned to its element size (the reference writer's layout).
 */
export function encodeSafetensors(tensors: Map<string, SafetensorsTensor> | Record<string, SafetensorsTensor>, metadata?: Record<string, string>): Uint8Array {
  const named = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [name, tensor] of named) checkTensor(name, tensor);
  named.sort(([nameA, a], [nameB, b]) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (nameA < nameB ? -1 : nameA > nameB ? 1 : 0));

  // A null-prototype object keeps a tensor named '__proto__' an ordinary key.
  const header = Object.create(null) as Record<string, unknown>;
  let offset = 0;
  for (const [name, tensor] of named) {
    const byteLength = tensor.data.byteLength;
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  // The reference writer puts the metadata last. With the same order and padding, re-encoding a
  // file it wrote gives the same bytes.
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new TypeError(`safetensors metadata '${key}' must be a string, got ${typeof value}`);
    }
    header['__metadata__'] = metadata;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  const paddedLength = Math.ceil(json.length / 8) * 8;
  const output = new Uint8Array(8 + paddedLength + offset);
  new DataView(output.buffer).setBigUint64(0, BigInt(paddedLength), true);
  output.set(json, 8);
  output.fill(0x20, 8 + json.length, 8 + paddedLength);

  let position = 8 + paddedLength;
  for (const [, tensor] of named) {
    const raw = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    output.set(raw, position);
    if (!HOST_IS_LITTLE_ENDIAN && DTYPE_BYTES[tensor.dtype] > 1) swapByteOrder(output.subarray(position, position + raw.length), DTYPE_BYTES[tensor.dtype]);
    position += raw.length;
  }
  return output;
}

function checkTensor(name: string, tensor: SafetensorsTensor): void {
  if (name === '__metadata__') throw new TypeError(`safetensors: '__metadata__' is reserved and cannot name a tensor`);
  if (!isDtype(tensor.dtype)) throw new TypeError(`safetensors: tensor '${name}' has unsupported dtype ${JSON.stringify(tensor.dtype)}`);
  const expectedBytes = elementCount(tensor.shape) * DTYPE_BYTES[tensor.dtype];
  if (tensor.data.byteLength !== expectedBytes) {
    throw new TypeError(
      `safetensors: tensor '${name}' (${tensor.dtype} [${tensor.shape.join(', ')}]) needs ${expectedBytes} bytes of data, got ${tensor.data.byteLength}`,
    );
  }
}

/** Serialises tensors and writes them atomically (temporary file, then rename) to `path`. */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, SafetensorsTensor> | Record<string, SafetensorsTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/** Converts an IEEE 754 half-precision bit pattern to a number. */
export function float16ToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * Returns the elements of a numeric tensor as float32, decoding F16 and BF16 and rounding
 * F64 and 64-bit integers to the nearest float32. BOOL becomes 0 and 1.
 */
export function toFloat32Array(tensor: SafetensorsTensor): Float32Array {
  const { dtype, data } = tensor;
  if (dtype === 'F32') return data as Float32Array;
  const result = new Float32Array(data.length);
  if (dtype === 'F16') {
    const bits = data as Uint16Array;
    for (let i = 0; i < bits.length; i++) result[i] = float16ToNumber(bits[i]!);
  } else if (dtype === 'BF16') {
    // A bfloat16 is the upper half of a float32 with the same bits.
    const widened = new Uint32Array(result.buffer);
    const bits = data as Uint16Array;
    for (let i = 0; i < bits.length; i++) widened[i] = bits[i]! << 16;
  } else if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < data.length; i++) result[i] = Number(data[i]!);
  } else {
    result.set(data as ArrayLike<number>);
  }
  return result;
}
