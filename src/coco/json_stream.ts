/**
 * Incremental parsing of large JSON documents, fed in byte chunks.
 *
 * JSON.parse needs the whole text as one string, and V8 strings stop at about 512 MiB
 * (2^29 - 24 characters), so a COCO annotation file of that size cannot be parsed at once.
 * This parser scans the bytes for the elements of the large arrays instead: the root array,
 * or each array that is a member value of the root object (COCO's `images`, `annotations`,
 * `categories`). It hands batches of whole elements to JSON.parse, so no string is longer
 * than about one batch and the raw text never has to be held in memory at once.
 */
import { DataError } from '../utils/errors.ts';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
/** UTF-8 byte order mark, skipped at the start. */
const UTF8_BOM = [0xef, 0xbb, 0xbf];

/** Bytes of array elements parsed together by one JSON.parse call. */
const DEFAULT_BATCH_BYTES = 4 * 1024 * 1024;

const enum State {
  /** Before the root value. */
  Start,
  /** In the root object, before a member key or the closing brace. */
  KeyOrEnd,
  /** Inside a member key string. */
  Key,
  /** After a member key, before its colon. */
  Colon,
  /** After a colon, before the member value. */
  ValueStart,
  /** Inside a member value that is not an array: captured whole. */
  Value,
  /** Inside a split array, before an element or the closing bracket. */
  ElementStart,
  /** Inside an element of a split array. */
  Element,
  /** After a split array that was a member value, before ',' or '}'. */
  AfterValue,
  /** After the root value: only whitespace may follow. */
  Done,
}

function isWhitespace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/** Returns the offset of the quote that closes the string opened at `open`, or -1 when the chunk ends first. */
function findClosingQuote(chunk: Uint8Array, open: number): number {
  let close = chunk.indexOf(QUOTE, open + 1);
  while (close >= 0) {
    let backslashes = 0;
    for (let b = close - 1; b > open && chunk[b] === BACKSLASH; b--) backslashes++;
    if (backslashes % 2 === 0) return close;
    close = chunk.indexOf(QUOTE, close + 1);
  }
  return -1;
}

function describeByte(byte: number): string {
  return byte >= 0x20 && byte < 0x7f ? JSON.stringify(String.fromCharCode(byte)) : `byte 0x${byte.toString(16)}`;
}

/**
 * Parser of one JSON document whose root is an object or an array. Call push() with
 * consecutive chunks, then end() for the parsed value. `source` names the document in errors.
 */
export class JsonChunkParser {
  private state = State.Start;
  /** Parsed root: the object being filled, or the root array. */
  private root: Record<string, unknown> | unknown[] | undefined;
  /** The split array that receives parsed elements. */
  private target: unknown[] = [];
  private key = '';
  /** Bytes of the capture in progress (key, value or batch of elements) from earlier chunks. */
  private parts: Uint8Array[] = [];
  private partsLength = 0;
  /** String and nesting state inside a captured value or element. */
  private inString = false;
  private escaped = false;
  private depth = 0;
  /** Bytes of a leading UTF-8 byte order mark seen so far. */
  private bomBytes = 0;
  /** True between a ',' and the next element of a split array. */
  private afterComma = false;
  /** Offset of the current chunk's first byte in the document, for error messages. */
  private offset = 0;
  private readonly batchBytes: number;

  constructor(
    private readonly source: string,
    options: { batchBytes?: number } = {},
  ) {
    this.batchBytes = options.batchBytes ?? DEFAULT_BATCH_BYTES;
  }

  /** Feeds the next chunk of the document. */
  push(chunk: Uint8Array): void {
    let start = -1;
    let position = 0;
    const length = chunk.length;
    // A capture that continues from the previous chunk continues at this chunk's first byte.
    if (this.state === State.Key || this.state === State.Value || this.state === State.Element || this.partsLength > 0) {
      start = 0;
    }

    while (position < length) {
      const byte = chunk[position]!;
      switch (this.state) {
        case State.Start:
          if (this.offset + position === this.bomBytes && byte === UTF8_BOM[this.bomBytes]) {
            this.bomBytes++;
            break;
          }
          if (isWhitespace(byte)) break;
          if (byte === OPEN_BRACE) {
            this.root = {};
            this.state = State.KeyOrEnd;
          } else if (byte === OPEN_BRACKET) {
            this.root = [];
            this.target = this.root;
            this.state = State.ElementStart;
          } else {
            this.fail(position, `expected a JSON object or array, found ${describeByte(byte)}`);
          }
          break;

        case State.KeyOrEnd:
          if (isWhitespace(byte)) break;
          if (byte === QUOTE) {
            this.state = State.Key;
            this.escaped = false;
            start = position;
          } else if (byte === CLOSE_BRACE && Object.keys(this.root as object).length === 0) {
            this.state = State.Done;
          } else {
            this.fail(position, `expected a member name in double quotes, found ${describeByte(byte)}`);
          }
          break;

        case State.Key:
          if (this.escaped) this.escaped = false;
          else if (byte === BACKSLASH) this.escaped = true;
          else if (byte === QUOTE) {
            this.key = this.parseCaptured(chunk, start, position + 1, position) as string;
            start = -1;
            this.state = State.Colon;
          }
          break;

        case State.Colon:
          if (isWhitespace(byte)) break;
          if (byte !== COLON) this.fail(position, `expected ':' after member name ${JSON.stringify(this.key)}, found ${describeByte(byte)}`);
          this.state = State.ValueStart;
          break;

        case State.ValueStart:
          if (isWhitespace(byte)) break;
          if (byte === OPEN_BRACKET) {
            this.target = [];
            (this.root as Record<string, unknown>)[this.key] = this.target;
            this.state = State.ElementStart;
          } else {
            this.state = State.Value;
            this.resetNesting();
            start = position;
            continue; // scan this byte as part of the value
          }
          break;

        case State.Value:
        case State.Element: {
          const end = this.scanValue(chunk, position);
          if (end < 0) {
            position = length;
            continue;
          }
          position = end;
          const terminator = chunk[end]!;
          if (this.state === State.Value) {
            (this.root as Record<string, unknown>)[this.key] = this.parseCaptured(chunk, start, end, end);
            start = -1;
            this.state = terminator === COMMA ? State.KeyOrEnd : State.Done;
            if (terminator === CLOSE_BRACKET) this.fail(end, "unexpected ']' in an object");
          } else if (terminator === COMMA) {
            // Cut the batch at this element boundary once it is large enough.
            if (this.partsLength + (end - start) >= this.batchBytes) {
              this.flushBatch(chunk, start, end, end);
              start = -1;
            }
            this.afterComma = true;
            this.state = State.ElementStart;
          } else {
            if (terminator === CLOSE_BRACE) this.fail(end, "unexpected '}' in an array");
            this.flushBatch(chunk, start, end, end);
            start = -1;
            this.state = this.target === this.root ? State.Done : State.AfterValue;
          }
          break;
        }

        case State.ElementStart:
          if (isWhitespace(byte)) break;
          if (byte === CLOSE_BRACKET) {
            if (this.afterComma) this.fail(position, "expected a value after ',', found ']'");
            this.state = this.target === this.root ? State.Done : State.AfterValue;
            break;
          }
          if (start < 0) start = position;
          this.afterComma = false;
          this.state = State.Element;
          this.resetNesting();
          continue; // scan this byte as part of the element

        case State.AfterValue:
          if (isWhitespace(byte)) break;
          if (byte === COMMA) this.state = State.KeyOrEnd;
          else if (byte === CLOSE_BRACE) this.state = State.Done;
          else this.fail(position, `expected ',' or '}' after member ${JSON.stringify(this.key)}, found ${describeByte(byte)}`);
          break;

        case State.Done:
          if (!isWhitespace(byte)) this.fail(position, `unexpected ${describeByte(byte)} after the end of the JSON document`);
          break;
      }
      position++;
    }

    if (start >= 0) {
      // Copied, because the caller may reuse the chunk's memory and Buffer.slice is only a view.
      this.parts.push(Uint8Array.prototype.slice.call(chunk, start));
      this.partsLength += length - start;
    }
    this.offset += length;
  }

  /** Finishes the document and returns the parsed value. Throws DataError if it is incomplete. */
  end(): unknown {
    if (this.state !== State.Done) {
      throw new DataError(`${this.source}: invalid JSON: the data ends at byte ${this.offset} before the document is complete`);
    }
    return this.root;
  }

  private resetNesting(): void {
    this.inString = false;
    this.escaped = false;
    this.depth = 0;
  }

  /**
   * Scans a value from `position` and returns the offset of the ',' ']' or '}' that ends it at
   * nesting depth 0, or -1 when the chunk ends first (the nesting state is kept for the next chunk).
   */
  private scanValue(chunk: Uint8Array, position: number): number {
    const length = chunk.length;
    let depth = this.depth;
    let inString = this.inString;
    let escaped = this.escaped;
    for (; position < length; position++) {
      const byte = chunk[position]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (byte === BACKSLASH) escaped = true;
        else if (byte === QUOTE) inString = false;
        continue;
      }
      if (byte === QUOTE) {
        // Jump to the closing quote when it is in this chunk: a quote preceded by an even
        // number of backslashes. Long strings (RLE counts) are most of a results file.
        const close = findClosingQuote(chunk, position);
        if (close < 0) inString = true;
        else position = close;
      } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) depth++;
      else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        if (depth === 0) break;
        depth--;
      } else if (byte === COMMA && depth === 0) break;
    }
    this.depth = depth;
    this.inString = inString;
    this.escaped = escaped;
    return position < length ? position : -1;
  }

  /** Parses the captured bytes (earlier parts plus chunk[start, end)) as one JSON value. */
  private parseCaptured(chunk: Uint8Array, start: number, end: number, errorPosition: number): unknown {
    const text = this.takeCaptured(chunk, start, end);
    try {
      return JSON.parse(text);
    } catch (error) {
      this.fail(errorPosition, (error as Error).message);
    }
  }

  /** Parses the captured elements (earlier parts plus chunk[start, end)) and appends them to the target array. */
  private flushBatch(chunk: Uint8Array, start: number, end: number, errorPosition: number): void {
    const text = this.takeCaptured(chunk, start, end);
    let elements: unknown[];
    try {
      elements = JSON.parse('[' + text + ']') as unknown[];
    } catch (error) {
      this.fail(errorPosition, (error as Error).message);
    }
    const target = this.target;
    for (let n = 0; n < elements.length; n++) target.push(elements[n]);
  }

  private takeCaptured(chunk: Uint8Array, start: number, end: number): string {
    const tail = chunk.subarray(Math.max(start, 0), end);
    let bytes: Uint8Array = tail;
    if (this.parts.length > 0) {
      bytes = Buffer.concat([...this.parts, tail]);
      this.parts = [];
      this.partsLength = 0;
    }
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
  }

  private fail(position: number, reason: string): never {
    throw new DataError(`${this.source}: invalid JSON near byte ${this.offset + position}: ${reason}`);
  }
}
