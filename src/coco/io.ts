/** Reading COCO JSON files, plain or gzip-compressed, of any size. */
import { closeSync, createReadStream, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip, gunzipSync } from 'node:zlib';

import { DataError } from '../utils/errors.ts';
import { JsonChunkParser } from './json_stream.ts';

const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;
/**
 * Text size above which a file is parsed in chunks. One JSON.parse is faster, but its input
 * string may not exceed V8's limit of 2^29 - 24 characters and costs as much memory as the file.
 */
const WHOLE_PARSE_LIMIT_BYTES = 256 * 1024 * 1024;
const CHUNK_BYTES = 4 * 1024 * 1024;

export interface ReadJsonOptions {
  /** Text size in bytes above which the file is parsed in chunks. Defaults to 256 MiB. */
  wholeParseLimitBytes?: number;
  /** Bytes read at a time when parsing in chunks. Defaults to 4 MiB. */
  chunkBytes?: number;
}

/** Turns a failed open or read into a DataError naming the file. */
function readError(path: string, error: unknown): DataError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new DataError(`${path}: file not found`, { cause: error });
  return new DataError(`${path}: read failed: ${(error as Error).message}`, { cause: error });
}

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === GZIP_MAGIC_0 && bytes[1] === GZIP_MAGIC_1;
}

function parseWhole(bytes: Buffer, path: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new DataError(`${path}: invalid JSON: ${(error as Error).message}`, { cause: error });
  }
}

function parseInChunks(bytes: Buffer, path: string, chunkBytes: number): unknown {
  const parser = new JsonChunkParser(path);
  for (let start = 0; start < bytes.length; start += chunkBytes) {
    parser.push(bytes.subarray(start, start + chunkBytes));
  }
  return parser.end();
}

/**
 * Reads and parses a `.json` or `.json.gz` file. Compression is detected from the gzip magic
 * bytes, so a misnamed file still loads. Texts above 256 MiB are parsed in chunks: a plain
 * file is then read 4 MiB at a time, but a gzip file is first decompressed whole into memory
 * (readJsonFileAsync streams it instead). Throws DataError naming the file when it cannot be
 * decompressed or parsed.
 */
export function readJsonFile(path: string, options: ReadJsonOptions = {}): unknown {
  const limit = options.wholeParseLimitBytes ?? WHOLE_PARSE_LIMIT_BYTES;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw readError(path, error);
  }
  let bytes: Buffer;
  try {
    const head = Buffer.alloc(2);
    readSync(fd, head, 0, 2, 0);
    const size = fstatSync(fd).size;
    if (!isGzip(head) && size > limit) return readPlainInChunks(fd, path, options.chunkBytes ?? CHUNK_BYTES);
    bytes = readFileSync(fd);
  } finally {
    closeSync(fd);
  }

  if (isGzip(bytes)) {
    try {
      bytes = gunzipSync(bytes);
    } catch (error) {
      throw new DataError(`${path}: invalid gzip data: ${(error as Error).message}`, { cause: error });
    }
  }
  return bytes.length > limit ? parseInChunks(bytes, path, options.chunkBytes ?? CHUNK_BYTES) : parseWhole(bytes, path);
}

function readPlainInChunks(fd: number, path: string, chunkBytes: number): unknown {
  const parser = new JsonChunkParser(path);
  const buffer = Buffer.alloc(chunkBytes);
  let position = 0;
  for (;;) {
    const count = readSync(fd, buffer, 0, chunkBytes, position);
    if (count === 0) break;
    parser.push(buffer.subarray(0, count));
    position += count;
  }
  return parser.end();
}

/**
 * Reads and parses a `.json` or `.json.gz` file as a stream: at no time does the raw or
 * decompressed text sit in memory whole, only 4 MiB chunks and the parsed values. Use it for
 * files of hundreds of megabytes. Throws DataError naming the file when it cannot be
 * decompressed or parsed.
 */
export async function readJsonFileAsync(path: string): Promise<unknown> {
  const handle = await open(path, 'r').catch((error: unknown) => {
    throw readError(path, error);
  });
  const head = Buffer.alloc(2);
  try {
    await handle.read(head, 0, 2, 0);
  } finally {
    await handle.close();
  }

  const parser = new JsonChunkParser(path);
  const file = createReadStream(path, { highWaterMark: CHUNK_BYTES });
  let stream: Readable = file;
  const compressed = isGzip(head);
  if (compressed) {
    const gunzip = createGunzip({ chunkSize: CHUNK_BYTES });
    file.on('error', (error) => gunzip.destroy(error));
    stream = file.pipe(gunzip);
  }
  try {
    for await (const chunk of stream) parser.push(chunk as Buffer);
  } catch (error) {
    if (error instanceof DataError) throw error;
    if (!compressed) throw readError(path, error);
    throw new DataError(`${path}: invalid gzip data: ${(error as Error).message}`, { cause: error });
  } finally {
    stream.destroy();
    file.destroy();
  }
  return parser.end();
}
