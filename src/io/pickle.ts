import { CheckpointError } from '../utils/errors.ts';

/**
 * An interpreter for Python pickles (protocols 2 to 5, the binary opcodes) that never runs
 * code from the data. Python's unpickler imports any `module.name` that a GLOBAL opcode names
 * and calls it, which lets a pickle run arbitrary code. Here the caller's `resolveGlobal`
 * decides which names exist. It returns a value implemented in TypeScript or throws, and
 * REDUCE can only call what it returned.
 *
 * Python values become these TypeScript values. None is null, bool is boolean, and int is a
 * number, or a bigint beyond 2^53. A float is a number, str a string and bytes a Uint8Array.
 * A list is a plain array and a tuple a frozen array. A dict is a Map, and set and frozenset
 * are Sets.
 * Opcode semantics follow CPython's Lib/pickle.py and Lib/pickletools.py.
 */

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | readonly PickleValue[]
  | Map<PickleValue, PickleValue>
  | Set<PickleValue>
  | PickleCallable
  | PickleOpaque;

/** A Python callable that a pickle may REDUCE or NEWOBJ, implemented by the caller. */
export class PickleCallable {
  constructor(
    /** `module.name`, for messages. */
    readonly globalName: string,
    readonly call: (args: readonly PickleValue[]) => PickleValue,
  ) {}
}

/**
 * A value the caller builds and the interpreter only passes around, such as a tensor or a
 * storage type. `setState` receives the state of a BUILD opcode applied to it.
 */
export abstract class PickleOpaque {
  abstract readonly description: string;
  setState(state: PickleValue): void {
    void state;
    throw new Error(`cannot set the state of ${this.description}`);
  }
}

export interface UnpickleOptions {
  /** Names the pickle in error messages. */
  source: string;
  /** Returns the value for `module.name`, or throws when the name is not allowed. */
  resolveGlobal: (module: string, name: string) => PickleValue;
  /** Returns the object for a persistent id (PERSID/BINPERSID); throws when there is none. */
  persistentLoad?: (pid: PickleValue) => PickleValue;
}

/**
 * State that BUILD set on a dict, keyed by the dict. PyTorch stores per-module versions in
 * the `_metadata` attribute of a state dict this way.
 */
export const dictAttributes = new WeakMap<Map<PickleValue, PickleValue>, PickleValue>();

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

/** Opcodes of protocol 0 and 1 that torch.save never writes; the message names them. */
const TEXT_OPCODES: Record<number, string> = {
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4c: 'LONG',
  0x50: 'PERSID',
  0x53: 'STRING',
  0x56: 'UNICODE',
  0x67: 'GET',
  0x69: 'INST',
  0x6f: 'OBJ',
  0x70: 'PUT',
};

function isFrozenArray(value: unknown): value is readonly PickleValue[] {
  return Array.isArray(value) && Object.isFrozen(value);
}

/** Decodes a little-endian two's-complement integer (LONG1/LONG4) to a number when it fits, else a bigint. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!);
  if ((bytes[bytes.length - 1]! & 0x80) !== 0) value -= 1n << BigInt(8 * bytes.length);
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/** Describes a value for error messages. */
export function describePickleValue(value: PickleValue | undefined): string {
  if (value === null) return 'None';
  if (value === undefined) return 'nothing';
  if (value instanceof PickleCallable) return `callable ${value.globalName}`;
  if (value instanceof PickleOpaque) return value.description;
  if (value instanceof Map) return `dict of ${value.size} items`;
  if (value instanceof Set) return `set of ${value.size} items`;
  if (value instanceof Uint8Array) return `bytes of length ${value.length}`;
  if (Array.isArray(value)) return `${isFrozenArray(value) ? 'tuple' : 'list'} of ${value.length} items`;
  return `${typeof value} ${JSON.stringify(typeof value === 'bigint' ? String(value) : value)}`;
}

/** Interprets the pickle in `bytes` and returns the object it describes. */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): PickleValue {
  return new Unpickler(bytes, options).run();
}

class Unpickler {
  private position = 0;
  /** Offset of the opcode being run, which errors report. */
  private opcodeStart = 0;
  private stack: StackItem[] = [];
  private readonly memo = new Map<number, PickleValue>();
  private readonly view: DataView;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(
    private readonly bytes: Uint8Array,
    private readonly options: UnpickleOptions,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private error(detail: string, at = this.opcodeStart): CheckpointError {
    return new CheckpointError(`${this.options.source}: invalid pickle at byte ${at}: ${detail}`);
  }

  private need(count: number): number {
    if (this.position + count > this.bytes.length) {
      throw this.error(`needs ${count} more bytes but the pickle ends at byte ${this.bytes.length} (truncated?)`);
    }
    const start = this.position;
    this.position += count;
    return start;
  }

  private u8(): number {
    return this.bytes[this.need(1)]!;
  }
  private u16(): number {
    return this.view.getUint16(this.need(2), true);
  }
  private u32(): number {
    return this.view.getUint32(this.need(4), true);
  }
  private u64(): number {
    const value = this.view.getBigUint64(this.need(8), true);
    if (value > BigInt(this.bytes.length)) throw this.error(`length ${value} exceeds the pickle size`);
    return Number(value);
  }
  private take(length: number): Uint8Array {
    const start = this.need(length);
    return this.bytes.subarray(start, start + length);
  }
  private text(length: number): string {
    try {
      return this.utf8.decode(this.take(length));
    } catch {
      throw this.error('string is not valid UTF-8');
    }
  }
  /** Reads a newline-terminated ASCII line (GLOBAL's module and name). */
  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.position);
    if (end < 0) throw this.error('line without a newline (truncated?)');
    const line = new TextDecoder('latin1').decode(this.bytes.subarray(this.position, end));
    this.position = end + 1;
    return line;
  }

  private push(value: PickleValue): void {
    this.stack.push(value);
  }

  private pop(): PickleValue {
    const value = this.stack.pop();
    if (value === undefined) throw this.error('stack underflow');
    if (value === MARK) throw this.error('unexpected MARK on the stack');
    return value;
  }

  private top(): PickleValue {
    const value = this.stack[this.stack.length - 1];
    if (value === undefined || value === MARK) throw this.error('stack underflow');
    return value;
  }

  /** Pops everything down to the topmost MARK and the MARK itself. */
  private popMark(): PickleValue[] {
    const index = this.stack.lastIndexOf(MARK);
    if (index < 0) throw this.error('no MARK on the stack');
    const items = this.stack.slice(index + 1) as PickleValue[];
    this.stack.length = index;
    return items;
  }

  private memoGet(index: number): PickleValue {
    const value = this.memo.get(index);
    if (value === undefined) throw this.error(`memo entry ${index} is not defined`);
    return value;
  }

  private global(module: string, name: string): PickleValue {
    return this.options.resolveGlobal(module, name);
  }

  private call(callable: PickleValue, args: PickleValue, opcode: string): PickleValue {
    if (!(callable instanceof PickleCallable)) throw this.error(`${opcode} on ${describePickleValue(callable)}, which is not callable`);
    if (!isFrozenArray(args)) throw this.error(`${opcode} arguments of ${callable.globalName} are a ${describePickleValue(args)}, expected a tuple`);
    try {
      return callable.call(args);
    } catch (error) {
      if (error instanceof CheckpointError) throw error;
      throw this.error(`${callable.globalName}${this.argumentSummary(args)}: ${(error as Error).message}`);
    }
  }

  private argumentSummary(args: readonly PickleValue[]): string {
    return `(${args.map((arg) => describePickleValue(arg)).join(', ')})`;
  }

  private setItems(target: PickleValue, items: PickleValue[]): void {
    if (!(target instanceof Map)) throw this.error(`SETITEM(S) on ${describePickleValue(target)}, expected a dict`);
    if (items.length % 2 !== 0) throw this.error('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) target.set(items[i]!, items[i + 1]!);
  }

  private appendItems(target: PickleValue, items: PickleValue[]): void {
    if (!Array.isArray(target) || isFrozenArray(target)) throw this.error(`APPEND(S) on ${describePickleValue(target)}, expected a list`);
    (target as PickleValue[]).push(...items);
  }

  private build(target: PickleValue, state: PickleValue): void {
    if (target instanceof Map) {
      dictAttributes.set(target, state);
    } else if (target instanceof PickleOpaque) {
      try {
        target.setState(state);
      } catch (error) {
        throw this.error(`BUILD: ${(error as Error).message}`);
      }
    } else {
      throw this.error(`BUILD on ${describePickleValue(target)}`);
    }
  }

  run(): PickleValue {
    for (;;) {
      this.opcodeStart = this.position;
      const opcode = this.u8();
      switch (opcode) {
        case 0x80: {
          const protocol = this.u8();
          if (protocol > 5) throw this.error(`pickle protocol ${protocol} is not supported (2 to 5 are)`);
          break;
        }
        case 0x95: // FRAME: only a length hint.
          this.need(8);
          break;
        case 0x2e: {
          const result = this.pop();
          if (this.stack.length !== 0) throw this.error(`STOP leaves ${this.stack.length} items on the stack`);
          return result;
        }

        case 0x28:
          this.stack.push(MARK);
          break;
        case 0x30:
          if (this.stack.pop() === undefined) throw this.error('POP on an empty stack');
          break;
        case 0x31:
          this.popMark();
          break;
        case 0x32:
          this.push(this.top());
          break;

        case 0x4e:
          this.push(null);
          break;
        case 0x88:
          this.push(true);
          break;
        case 0x89:
          this.push(false);
          break;
        case 0x4a:
          this.push(this.view.getInt32(this.need(4), true));
          break;
        case 0x4b:
          this.push(this.u8());
          break;
        case 0x4d:
          this.push(this.u16());
          break;
        case 0x8a:
          this.push(decodeLong(this.take(this.u8())));
          break;
        case 0x8b:
          this.push(decodeLong(this.take(this.u32())));
          break;
        case 0x47:
          this.push(this.view.getFloat64(this.need(8), false));
          break;

        case 0x58:
          this.push(this.text(this.u32()));
          break;
        case 0x8c:
          this.push(this.text(this.u8()));
          break;
        case 0x8d:
          this.push(this.text(this.u64()));
          break;
        case 0x54: // BINSTRING and SHORT_BINSTRING: Python 2 str, read as Latin-1 like encoding='latin1'.
          this.push(new TextDecoder('latin1').decode(this.take(this.u32())));
          break;
        case 0x55:
          this.push(new TextDecoder('latin1').decode(this.take(this.u8())));
          break;
        case 0x42:
          this.push(this.take(this.u32()).slice());
          break;
        case 0x43:
          this.push(this.take(this.u8()).slice());
          break;
        case 0x8e:
        case 0x96:
          this.push(this.take(this.u64()).slice());
          break;

        case 0x29:
          this.push(Object.freeze([]));
          break;
        case 0x85:
          this.push(Object.freeze([this.pop()]));
          break;
        case 0x86: {
          const second = this.pop();
          this.push(Object.freeze([this.pop(), second]));
          break;
        }
        case 0x87: {
          const third = this.pop();
          const second = this.pop();
          this.push(Object.freeze([this.pop(), second, third]));
          break;
        }
        case 0x74:
          this.push(Object.freeze(this.popMark()));
          break;
        case 0x5d:
          this.push([]);
          break;
        case 0x6c:
          this.push(this.popMark());
          break;
        case 0x7d:
          this.push(new Map());
          break;
        case 0x64: {
          const map = new Map<PickleValue, PickleValue>();
          this.setItems(map, this.popMark());
          this.push(map);
          break;
        }
        case 0x8f:
          this.push(new Set());
          break;
        case 0x91:
          this.push(new Set(this.popMark()));
          break;

        case 0x61: {
          const item = this.pop();
          this.appendItems(this.top(), [item]);
          break;
        }
        case 0x65: {
          const items = this.popMark();
          this.appendItems(this.top(), items);
          break;
        }
        case 0x73: {
          const value = this.pop();
          const key = this.pop();
          this.setItems(this.top(), [key, value]);
          break;
        }
        case 0x75: {
          const items = this.popMark();
          this.setItems(this.top(), items);
          break;
        }
        case 0x90: {
          const items = this.popMark();
          const target = this.top();
          if (!(target instanceof Set)) throw this.error(`ADDITEMS on ${describePickleValue(target)}, expected a set`);
          for (const item of items) target.add(item);
          break;
        }

        case 0x68:
          this.push(this.memoGet(this.u8()));
          break;
        case 0x6a:
          this.push(this.memoGet(this.u32()));
          break;
        case 0x71:
          this.memo.set(this.u8(), this.top());
          break;
        case 0x72:
          this.memo.set(this.u32(), this.top());
          break;
        case 0x94:
          this.memo.set(this.memo.size, this.top());
          break;

        case 0x63: {
          const module = this.line();
          const name = this.line();
          this.push(this.global(module, name));
          break;
        }
        case 0x93: {
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') throw this.error('STACK_GLOBAL needs two strings');
          this.push(this.global(module, name));
          break;
        }
        case 0x52: {
          const args = this.pop();
          const callable = this.pop();
          this.push(this.call(callable, args, 'REDUCE'));
          break;
        }
        case 0x81: {
          const args = this.pop();
          const cls = this.pop();
          this.push(this.call(cls, args, 'NEWOBJ'));
          break;
        }
        case 0x92: {
          const kwargs = this.pop();
          const args = this.pop();
          const cls = this.pop();
          if (!(kwargs instanceof Map) || kwargs.size !== 0) throw this.error('NEWOBJ_EX with keyword arguments is not supported');
          this.push(this.call(cls, args, 'NEWOBJ_EX'));
          break;
        }
        case 0x62: {
          const state = this.pop();
          this.build(this.top(), state);
          break;
        }
        case 0x51: {
          const pid = this.pop();
          if (this.options.persistentLoad === undefined) throw this.error('BINPERSID but this pickle allows no persistent ids');
          this.push(this.options.persistentLoad(pid));
          break;
        }

        case 0x82:
        case 0x83:
        case 0x84:
          throw this.error('EXT opcodes (the copyreg extension registry) are not supported');
        case 0x97:
        case 0x98:
          throw this.error('out-of-band buffers (protocol 5) are not supported');
        default: {
          const textName = TEXT_OPCODES[opcode];
          if (textName !== undefined) throw this.error(`opcode ${textName} of the text protocol 0 is not supported`);
          throw this.error(`unknown opcode 0x${opcode.toString(16).padStart(2, '0')}`);
        }
      }
    }
  }
}
