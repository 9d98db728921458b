import { crc32, inflateRawSync } from 'node:zlib';

import { CheckpointError } from '../utils/errors.ts';

/**
 * Reader of ZIP archives held in memory, enough for the archives that `torch.save` writes:
 * stored (uncompressed) entries, ZIP64 records for archives or entries past 4 GiB, and
 * deflated entries from other writers. Encrypted and multi-disk archives are rejected.
 * Field layouts follow PKWARE's APPNOTE.TXT (sections 4.3 and 4.5).
 */

/** One file of an archive, as its central directory entry describes it. */
export interface ZipEntry {
  name: string;
  /** 0 for stored, 8 for deflate. */
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  /** Offset of the entry's local file header. */
  localHeaderOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_HEADER_SIGNATURE = 0x02014b50;
const LOCAL_HEADER_SIGNATURE = 0x04034b50;
const EOCD_MIN_BYTES = 22;
const MAX_COMMENT_BYTES = 0xffff;
const ZIP64_EXTRA_ID = 0x0001;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

/** Reads the central directory of a ZIP archive and gives access to its entries' data. */
export class ZipArchive {
  /** Entries in central directory order. */
  readonly entries: ZipEntry[];
  private readonly byName: Map<string, ZipEntry>;
  private readonly view: DataView;

  /** Parses the archive's directory; `source` names the file in error messages. */
  constructor(
    readonly bytes: Uint8Array,
    readonly source: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.entries = this.readCentralDirectory();
    this.byName = new Map(this.entries.map((entry) => [entry.name, entry]));
  }

  get(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /**
   * Returns the uncompressed bytes of an entry. A stored entry is returned as a view into the
   * archive's buffer, without a copy. When `verifyChecksum` is set, the CRC-32 of the data must
   * equal the one in the directory.
   */
  read(entry: ZipEntry, verifyChecksum = true): Uint8Array {
    const { view, source } = this;
    const offset = entry.localHeaderOffset;
    if (offset + 30 > view.byteLength || view.getUint32(offset, true) !== LOCAL_HEADER_SIGNATURE) {
      throw this.error(`local header of '${entry.name}' is missing at offset ${offset}`);
    }
    const flags = view.getUint16(offset + 6, true);
    if ((flags & 1) !== 0) throw this.error(`entry '${entry.name}' is encrypted`);
    const dataStart = offset + 30 + view.getUint16(offset + 26, true) + view.getUint16(offset + 28, true);
    const dataEnd = dataStart + entry.compressedSize;
    if (dataEnd > view.byteLength) {
      throw this.error(`entry '${entry.name}' needs bytes up to ${dataEnd} but the file has ${view.byteLength} (truncated?)`);
    }
    const raw = this.bytes.subarray(dataStart, dataEnd);

    let data: Uint8Array;
    if (entry.method === 0) {
      data = raw;
    } else if (entry.method === 8) {
      try {
        data = inflateRawSync(raw);
      } catch (error) {
        throw this.error(`entry '${entry.name}' does not inflate: ${(error as Error).message}`);
      }
    } else {
      throw this.error(`entry '${entry.name}' uses compression method ${entry.method}; only 0 (stored) and 8 (deflate) are supported`);
    }
    if (data.byteLength !== entry.uncompressedSize) {
      throw this.error(`entry '${entry.name}' has ${data.byteLength} bytes, but the central directory records ${entry.uncompressedSize}`);
    }
    if (verifyChecksum && crc32(data) >>> 0 !== entry.crc32) {
      throw new CheckpointError(`${source}: entry '${entry.name}' fails its CRC-32 check (the file is corrupt)`);
    }
    return data;
  }

  private error(detail: string): CheckpointError {
    return new CheckpointError(`${this.source}: invalid zip archive: ${detail}`);
  }

  /** Finds the end-of-central-directory record by scanning back over a possible comment. */
  private findEndOfCentralDirectory(): number {
    const { view } = this;
    const lowest = Math.max(0, view.byteLength - EOCD_MIN_BYTES - MAX_COMMENT_BYTES);
    for (let offset = view.byteLength - EOCD_MIN_BYTES; offset >= lowest; offset--) {
      if (view.getUint32(offset, true) === EOCD_SIGNATURE && offset + EOCD_MIN_BYTES + view.getUint16(offset + 20, true) === view.byteLength) {
        return offset;
      }
    }
    throw this.error('end of central directory record not found (the file is truncated or is not a zip archive)');
  }

  private readCentralDirectory(): ZipEntry[] {
    const { view } = this;
    const eocd = this.findEndOfCentralDirectory();
    if (view.getUint16(eocd + 4, true) !== 0 || view.getUint16(eocd + 6, true) !== 0) {
      throw this.error('multi-disk archives are not supported');
    }
    let entryCount = view.getUint16(eocd + 10, true);
    let directorySize = view.getUint32(eocd + 12, true);
    let directoryOffset = view.getUint32(eocd + 16, true);

    if (entryCount === U16_MAX || directorySize === U32_MAX || directoryOffset === U32_MAX) {
      const locator = eocd - 20;
      if (locator < 0 || view.getUint32(locator, true) !== ZIP64_LOCATOR_SIGNATURE) {
        throw this.error('ZIP64 end of central directory locator not found');
      }
      const record = this.safeNumber(view.getBigUint64(locator + 8, true), 'ZIP64 record offset');
      if (record + 56 > view.byteLength || view.getUint32(record, true) !== ZIP64_EOCD_SIGNATURE) {
        throw this.error(`ZIP64 end of central directory record not found at offset ${record}`);
      }
      entryCount = this.safeNumber(view.getBigUint64(record + 32, true), 'entry count');
      directorySize = this.safeNumber(view.getBigUint64(record + 40, true), 'central directory size');
      directoryOffset = this.safeNumber(view.getBigUint64(record + 48, true), 'central directory offset');
    }
    if (directoryOffset + directorySize > view.byteLength) {
      throw this.error(`central directory [${directoryOffset}, ${directoryOffset + directorySize}) lies outside the file of ${view.byteLength} bytes`);
    }

    const entries: ZipEntry[] = [];
    const decoder = new TextDecoder('utf-8');
    let offset = directoryOffset;
    for (let i = 0; i < entryCount; i++) {
      if (offset + 46 > directoryOffset + directorySize || view.getUint32(offset, true) !== CENTRAL_HEADER_SIGNATURE) {
        throw this.error(`central directory entry ${i} of ${entryCount} not found at offset ${offset}`);
      }
      const nameLength = view.getUint16(offset + 28, true);
      const extraLength = view.getUint16(offset + 30, true);
      const commentLength = view.getUint16(offset + 32, true);
      const name = decoder.decode(this.bytes.subarray(offset + 46, offset + 46 + nameLength));
      const entry: ZipEntry = {
        name,
        method: view.getUint16(offset + 10, true),
        crc32: view.getUint32(offset + 16, true),
        compressedSize: view.getUint32(offset + 20, true),
        uncompressedSize: view.getUint32(offset + 24, true),
        localHeaderOffset: view.getUint32(offset + 42, true),
      };
      this.applyZip64Extra(entry, offset + 46 + nameLength, extraLength);
      entries.push(entry);
      offset += 46 + nameLength + extraLength + commentLength;
    }
    return entries;
  }

  /** Replaces the 32-bit fields set to 0xffffffff by their 64-bit values from the ZIP64 extra field. */
  private applyZip64Extra(entry: ZipEntry, extraStart: number, extraLength: number): void {
    const needed = [entry.uncompressedSize, entry.compressedSize, entry.localHeaderOffset].some((value) => value === U32_MAX);
    if (!needed) return;
    const { view } = this;
    let offset = extraStart;
    while (offset + 4 <= extraStart + extraLength) {
      const id = view.getUint16(offset, true);
      const size = view.getUint16(offset + 2, true);
      if (id === ZIP64_EXTRA_ID) {
        // The field lists only the values whose 32-bit field overflowed, in this order.
        let field = offset + 4;
        const next = (label: string): number => {
          if (field + 8 > offset + 4 + size) throw this.error(`ZIP64 extra field of '${entry.name}' lacks the ${label}`);
          const value = this.safeNumber(view.getBigUint64(field, true), label);
          field += 8;
          return value;
        };
        if (entry.uncompressedSize === U32_MAX) entry.uncompressedSize = next('uncompressed size');
        if (entry.compressedSize === U32_MAX) entry.compressedSize = next('compressed size');
        if (entry.localHeaderOffset === U32_MAX) entry.localHeaderOffset = next('local header offset');
        return;
      }
      offset += 4 + size;
    }
    throw this.error(`entry '${entry.name}' has 32-bit fields set to 0xffffffff but no ZIP64 extra field`);
  }

  private safeNumber(value: bigint, label: string): number {
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw this.error(`${label} ${value} is too large`);
    return Number(value);
  }
}

/** Returns whether `bytes` starts with a ZIP local file header or with the end record of an empty archive. */
export function looksLikeZip(bytes: Uint8Array): boolean {
  if (bytes.length < 4) return false;
  const signature = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  return signature === LOCAL_HEADER_SIGNATURE || signature === EOCD_SIGNATURE;
}
