/** Reading COCO JSON files, plain or gzip-compressed. */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

import { DataError } from '../utils/errors.ts';

const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;

/**
 * Reads and parses a `.json` or `.json.gz` file. Compression is detected from the gzip magic
 * bytes, so a misnamed file still loads. Throws DataError naming the file when it cannot be
 * decompressed or parsed.
 */
// TODO: a file whose text exceeds V8's maximum string length (about 512 MiB) cannot be parsed
// this way. Such files need a streaming parser.
export function readJsonFile(path: string): unknown {
  let bytes: Buffer = readFileSync(path);
  if (bytes.length >= 2 && bytes[0] === GZIP_MAGIC_0 && bytes[1] === GZIP_MAGIC_1) {
    try {
      bytes = gunzipSync(bytes);
    } catch (error) {
      throw new DataError(`${path}: invalid gzip data: ${(error as Error).message}`, { cause: error });
    }
  }
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new DataError(`${path}: invalid JSON: ${(error as Error).message}`, { cause: error });
  }
}
