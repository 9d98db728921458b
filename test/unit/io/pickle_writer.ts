/** Assembles a pickle from opcodes, the way CPython's pickler writes them, for reader tests. */
export class PickleWriter {
  private readonly bytes: number[] = [];

  raw(...values: number[]): this {
    this.bytes.push(...values);
    return this;
  }
  private u32(value: number): number[] {
    return [value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff, (value >>> 24) & 0xff];
  }
  proto(version: number): this {
    return this.raw(0x80, version);
  }
  int(value: number): this {
    if (value >= 0 && value < 256) return this.raw(0x4b, value);
    if (value >= 0 && value < 65536) return this.raw(0x4d, value & 0xff, value >> 8);
    return this.raw(0x4a, ...this.u32(value));
  }
  long1(littleEndian: number[]): this {
    return this.raw(0x8a, littleEndian.length, ...littleEndian);
  }
  float(value: number): this {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, value, false);
    return this.raw(0x47, ...new Uint8Array(view.buffer));
  }
  unicode(text: string): this {
    const encoded = [...new TextEncoder().encode(text)];
    return this.raw(0x58, ...this.u32(encoded.length), ...encoded);
  }
  shortUnicode(text: string): this {
    const encoded = [...new TextEncoder().encode(text)];
    return this.raw(0x8c, encoded.length, ...encoded);
  }
  global(module: string, name: string): this {
    return this.raw(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  stop(): Uint8Array {
    this.bytes.push(0x2e);
    return new Uint8Array(this.bytes);
  }
}
