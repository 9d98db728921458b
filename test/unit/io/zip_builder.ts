import { crc32, deflateRawSync } from 'node:zlib';

/** One file for `buildZip`. */
export interface ZipInput {
  name: string;
  data: Uint8Array | string;
  /** 0 stored (default) or 8 deflate; any other number is written as is, for error tests. */
  method?: number;
  /** General purpose flags of both headers (bit 0 marks encryption). */
  flags?: number;
}

/**
 * Writes a ZIP archive by hand for reader tests. With `zip64`, every entry stores its sizes
 * and offset in a ZIP64 extra field and the archive ends with ZIP64 records, as writers do
 * past 4 GiB, and the 32-bit fields then hold 0xffffffff.
 */
export function buildZip(inputs: readonly ZipInput[], options: { zip64?: boolean; comment?: string } = {}): Uint8Array {
  const encoder = new TextEncoder();
  const zip64 = options.zip64 ?? false;
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;

  for (const input of inputs) {
    const name = encoder.encode(input.name);
    const raw = typeof input.data === 'string' ? encoder.encode(input.data) : input.data;
    const method = input.method ?? 0;
    const stored = method === 8 ? new Uint8Array(deflateRawSync(raw)) : raw;
    const checksum = crc32(raw) >>> 0;

    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, zip64 ? 45 : 20, true);
    local.setUint16(6, input.flags ?? 0, true);
    local.setUint16(8, method, true);
    local.setUint32(14, checksum, true);
    local.setUint32(18, stored.length, true);
    local.setUint32(22, raw.length, true);
    local.setUint16(26, name.length, true);
    chunks.push(new Uint8Array(local.buffer), name, stored);

    const extra = new DataView(new ArrayBuffer(zip64 ? 28 : 0));
    if (zip64) {
      extra.setUint16(0, 0x0001, true);
      extra.setUint16(2, 24, true);
      extra.setBigUint64(4, BigInt(raw.length), true);
      extra.setBigUint64(12, BigInt(stored.length), true);
      extra.setBigUint64(20, BigInt(offset), true);
    }
    const header = new DataView(new ArrayBuffer(46));
    header.setUint32(0, 0x02014b50, true);
    header.setUint16(4, 45, true);
    header.setUint16(6, zip64 ? 45 : 20, true);
    header.setUint16(8, input.flags ?? 0, true);
    header.setUint16(10, method, true);
    header.setUint32(16, checksum, true);
    header.setUint32(20, zip64 ? 0xffffffff : stored.length, true);
    header.setUint32(24, zip64 ? 0xffffffff : raw.length, true);
    header.setUint16(28, name.length, true);
    header.setUint16(30, extra.byteLength, true);
    header.setUint32(42, zip64 ? 0xffffffff : offset, true);
    central.push(new Uint8Array(header.buffer), name, new Uint8Array(extra.buffer));
    offset += 30 + name.length + stored.length;
  }

  const directoryOffset = offset;
  const directorySize = central.reduce((sum, chunk) => sum + chunk.length, 0);
  chunks.push(...central);
  offset += directorySize;

  if (zip64) {
    const record = new DataView(new ArrayBuffer(56));
    record.setUint32(0, 0x06064b50, true);
    record.setBigUint64(4, 44n, true);
    record.setBigUint64(24, BigInt(inputs.length), true);
    record.setBigUint64(32, BigInt(inputs.length), true);
    record.setBigUint64(40, BigInt(directorySize), true);
    record.setBigUint64(48, BigInt(directoryOffset), true);
    const locator = new DataView(new ArrayBuffer(20));
    locator.setUint32(0, 0x07064b50, true);
    locator.setBigUint64(8, BigInt(offset), true);
    locator.setUint32(16, 1, true);
    chunks.push(new Uint8Array(record.buffer), new Uint8Array(locator.buffer));
  }

  const comment = encoder.encode(options.comment ?? '');
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, zip64 ? 0xffff : inputs.length, true);
  end.setUint16(10, zip64 ? 0xffff : inputs.length, true);
  end.setUint32(12, zip64 ? 0xffffffff : directorySize, true);
  end.setUint32(16, zip64 ? 0xffffffff : directoryOffset, true);
  end.setUint16(20, comment.length, true);
  chunks.push(new Uint8Array(end.buffer), comment);

  const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const bytes = new Uint8Array(total);
  let position = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, position);
    position += chunk.length;
  }
  return bytes;
}
