import { readFile } from 'node:fs/promises';

import { CheckpointError } from '../utils/errors.ts';
import { PickleCallable, PickleOpaque, describePickleValue, unpickle, type PickleValue } from './pickle.ts';
import { DTYPE_BYTES, type SafetensorsData, type SafetensorsDtype, type SafetensorsTensor } from './safetensors.ts';
import { ZipArchive, looksLikeZip } from './zip.ts';

/**
 * Reader of checkpoints that PyTorch 1.6 and later write with `torch.save` (`.pth`, `.pth.tar`,
 * `.pt`). Such a file is a ZIP archive with one top folder. `<folder>/data.pkl` is a pickle of
 * the saved object. Each tensor storage is the entry `<folder>/data/<key>`, which contains its
 * raw bytes in the byte order of `<folder>/byteorder` (little-endian when that entry is absent). In the
 * pickle, a tensor is a REDUCE of `torch._utils._rebuild_tensor_v2(storage, offset, size,
 * stride, requires_grad, hooks)`, and a storage is a persistent id
 * `('storage', torch.<Type>Storage, key, location, numel)`.
 *
 * The pickle may name only the globals of ALLOWED_GLOBALS and the storage types of
 * STORAGE_DTYPES. Any other global is rejected before anything else happens, so nothing
 * from the file is ever run.
 */

/** Element type of each storage class that `torch.save` names. */
const STORAGE_DTYPES: Readonly<Record<string, SafetensorsDtype>> = {
  DoubleStorage: 'F64',
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/** A storage class named by the pickle, such as `torch.FloatStorage`. */
class StorageType extends PickleOpaque {
  constructor(
    readonly name: string,
    readonly dtype: SafetensorsDtype,
  ) {
    super();
  }
  get description(): string {
    return `storage type torch.${this.name}`;
  }
}

/** One storage of the archive: the typed elements of its `data/<key>` entry, read on first use. */
class TorchStorage extends PickleOpaque {
  private elements: SafetensorsData | undefined;

  constructor(
    readonly key: string,
    readonly dtype: SafetensorsDtype,
    readonly numel: number,
    private readonly readBytes: () => Uint8Array,
  ) {
    super();
  }

  get description(): string {
    return `storage '${this.key}' (${this.dtype}, ${this.numel} elements)`;
  }

  data(): SafetensorsData {
    this.elements ??= bytesAsElements(this.dtype, this.readBytes());
    return this.elements;
  }
}

/** A tensor of the checkpoint: a strided view of a storage. */
export class TorchTensor extends PickleOpaque {
  constructor(
    readonly storage: TorchStorage,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {
    super();
  }

  get dtype(): SafetensorsDtype {
    return this.storage.dtype;
  }

  get description(): string {
    return `tensor ${this.dtype} [${this.shape.join(', ')}]`;
  }

  /** Ignores the Python state of tensor subclasses such as nn.Parameter, which rladet does not use. */
  override setState(): void {}

  /**
   * Returns the elements in C order. A contiguous tensor is a view of its storage (often of the
   * file's buffer, without a copy); a strided one is copied.
   */
  toTensor(): SafetensorsTensor {
    const storage = this.storage.data();
    const size = this.shape.reduce((product, dim) => product * dim, 1);
    const end = this.storageOffset + maxStridedIndex(this.shape, this.stride) + 1;
    if (size > 0 && end > storage.length) {
      throw new Error(`${this.description} at offset ${this.storageOffset} with stride [${this.stride.join(', ')}] reads past its storage of ${storage.length} elements`);
    }
    let data: SafetensorsData;
    if (isContiguous(this.shape, this.stride)) {
      data = storage.subarray(this.storageOffset, this.storageOffset + size) as SafetensorsData;
    } else {
      data = gatherStrided(storage, this.storageOffset, this.shape, this.stride);
    }
    return { dtype: this.dtype, shape: [...this.shape], data };
  }
}

/** Contents of a PyTorch checkpoint. */
export interface TorchCheckpoint {
  /** The unpickled object; tensors are TorchTensor values, dicts are Maps. */
  root: PickleValue;
  /** The archive's top folder (`torch.save` names it after the file). */
  folder: string;
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Views or copies `bytes` as elements of `dtype`, in the host's byte order. */
function bytesAsElements(dtype: SafetensorsDtype, bytes: Uint8Array, swap = false): SafetensorsData {
  const width = DTYPE_BYTES[dtype];
  if (bytes.byteLength % width !== 0) throw new Error(`${bytes.byteLength} bytes are not a whole number of ${dtype} elements`);
  // A typed array view needs an aligned offset; torch.save aligns storage data to 64 bytes.
  let aligned = bytes.byteOffset % width === 0 ? bytes : new Uint8Array(bytes);
  if (swap && width > 1) {
    aligned = aligned === bytes ? new Uint8Array(bytes) : aligned;
    for (let start = 0; start < aligned.length; start += width) aligned.subarray(start, start + width).reverse();
  }
  const { buffer, byteOffset, byteLength } = aligned;
  const count = byteLength / width;
  switch (dtype) {
    case 'F64':
      return new Float64Array(buffer, byteOffset, count);
    case 'F32':
      return new Float32Array(buffer, byteOffset, count);
    case 'F16':
    case 'BF16':
    case 'U16':
      return new Uint16Array(buffer, byteOffset, count);
    case 'I64':
      return new BigInt64Array(buffer, byteOffset, count);
    case 'U64':
      return new BigUint64Array(buffer, byteOffset, count);
    case 'I32':
      return new Int32Array(buffer, byteOffset, count);
    case 'U32':
      return new Uint32Array(buffer, byteOffset, count);
    case 'I16':
      return new Int16Array(buffer, byteOffset, count);
    case 'I8':
      return new Int8Array(buffer, byteOffset, count);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(buffer, byteOffset, count);
  }
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    if (shape[axis] !== 1 && stride[axis] !== expected) return false;
    expected *= shape[axis]!;
  }
  return true;
}

function maxStridedIndex(shape: readonly number[], stride: readonly number[]): number {
  return shape.reduce((sum, dim, axis) => sum + (dim > 0 ? (dim - 1) * stride[axis]! : 0), 0);
}

/** Copies a strided view into a new C-order array of the same element type. */
function gatherStrided(storage: SafetensorsData, offset: number, shape: readonly number[], stride: readonly number[]): SafetensorsData {
  const size = shape.reduce((product, dim) => product * dim, 1);
  const Constructor = storage.constructor as new (length: number) => SafetensorsData;
  const result = new Constructor(size);
  const index = new Array<number>(shape.length).fill(0);
  let source = offset;
  for (let i = 0; i < size; i++) {
    (result as unknown as Array<number | bigint>)[i] = (storage as unknown as Array<number | bigint>)[source]!;
    // Advance the multi-index like an odometer, updating the source offset incrementally.
    for (let axis = shape.length - 1; axis >= 0; axis--) {
      index[axis]! += 1;
      source += stride[axis]!;
      if (index[axis]! < shape[axis]!) break;
      source -= index[axis]! * stride[axis]!;
      index[axis] = 0;
    }
  }
  return result;
}

function isIntegerTuple(value: PickleValue | undefined): value is readonly number[] {
  return Array.isArray(value) && value.every((item) => Number.isSafeInteger(item));
}

/** Arguments of `_rebuild_tensor_v2` / `_rebuild_tensor`: (storage, offset, size, stride, ...). */
function rebuildTensor(args: readonly PickleValue[]): TorchTensor {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof TorchStorage)) throw new Error(`expected a storage as the first argument, got ${describePickleValue(storage)}`);
  if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw new Error(`invalid storage offset ${describePickleValue(offset)}`);
  if (!isIntegerTuple(size) || !isIntegerTuple(stride) || size.length !== stride.length) {
    throw new Error(`size ${describePickleValue(size)} and stride ${describePickleValue(stride)} must be integer tuples of equal length`);
  }
  return new TorchTensor(storage, offset as number, [...size], [...stride]);
}

/** `_rebuild_parameter(data, requires_grad, backward_hooks[, state])`: an nn.Parameter is its data here. */
function rebuildParameter(args: readonly PickleValue[]): PickleValue {
  const data = args[0];
  if (!(data instanceof TorchTensor)) throw new Error(`expected a tensor, got ${describePickleValue(data)}`);
  return data;
}

function newOrderedDict(args: readonly PickleValue[]): PickleValue {
  const map = new Map<PickleValue, PickleValue>();
  const items = args[0];
  if (items === undefined) return map;
  if (!Array.isArray(items)) throw new Error(`expected a list of pairs, got ${describePickleValue(items)}`);
  for (const pair of items) {
    if (!Array.isArray(pair) || pair.length !== 2) throw new Error(`expected a (key, value) pair, got ${describePickleValue(pair)}`);
    map.set(pair[0]!, pair[1]!);
  }
  return map;
}

function newSet(args: readonly PickleValue[]): PickleValue {
  const items = args[0] ?? [];
  if (!Array.isArray(items)) throw new Error(`expected a list, got ${describePickleValue(items)}`);
  return new Set(items);
}

/** Protocol 2 writes Python 3 bytes as `_codecs.encode(text, 'latin1')`. */
function encodeLatin1(args: readonly PickleValue[]): PickleValue {
  const [text, encoding] = args;
  if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
    throw new Error(`only encode(str, 'latin1') is supported, got (${args.map((arg) => describePickleValue(arg)).join(', ')})`);
  }
  return Uint8Array.from(text, (char) => char.charCodeAt(0));
}

/** The globals a state dict needs, each implemented here. */
const ALLOWED_GLOBALS: ReadonlyMap<string, PickleCallable> = new Map(
  (
    [
      ['collections.OrderedDict', newOrderedDict],
      ['torch._utils._rebuild_tensor_v2', rebuildTensor],
      ['torch._utils._rebuild_tensor', rebuildTensor],
      ['torch._utils._rebuild_parameter', rebuildParameter],
      ['torch._utils._rebuild_parameter_with_state', rebuildParameter],
      ['builtins.set', newSet],
      ['builtins.frozenset', newSet],
      ['builtins.bytes', () => new Uint8Array(0)],
      ['_codecs.encode', encodeLatin1],
      ['torch.Size', (args: readonly PickleValue[]) => Object.freeze([...((args[0] as PickleValue[] | undefined) ?? [])])],
    ] as Array<[string, (args: readonly PickleValue[]) => PickleValue]>
  ).map(([name, call]) => [name, new PickleCallable(name, call)]),
);

/** Parses the persistent id of a storage: ('storage', storage type, key, location, numel). */
function parseStoragePid(pid: PickleValue): { type: StorageType; key: string; numel: number } {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) {
    throw new Error(`expected ('storage', type, key, location, numel), got ${describePickleValue(pid)}`);
  }
  const [, type, key, , numel] = pid;
  if (!(type instanceof StorageType)) throw new Error(`storage type is ${describePickleValue(type)}`);
  if (typeof key !== 'string') throw new Error(`storage key is ${describePickleValue(key)}`);
  if (!Number.isSafeInteger(numel) || (numel as number) < 0) throw new Error(`storage size is ${describePickleValue(numel)}`);
  return { type, key, numel: numel as number };
}

/** First bytes of a legacy-format file: PROTO 2, then LONG1 of the magic number 0x1950a86a20f9469cfc6c. */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/** Returns whether `bytes` is a checkpoint in PyTorch's legacy format (a pickle stream or a tar archive). */
export function isLegacyTorchFormat(bytes: Uint8Array): boolean {
  const pickled = LEGACY_MAGIC.every((byte, i) => bytes[i] === byte);
  const tar = bytes.length > 262 && new TextDecoder('latin1').decode(bytes.subarray(257, 262)) === 'ustar';
  return pickled || tar;
}

export function legacyFormatError(source: string): CheckpointError {
  return new CheckpointError(
    `${source} was written by torch.save in PyTorch's legacy format (before PyTorch 1.6 or with ` +
      `_use_new_zipfile_serialization=False), which rladet does not read. Re-save it in the zip format with ` +
      `PyTorch 1.6 or later: python -c "import torch; torch.save(torch.load('${source}', map_location='cpu'), 'resaved.pth')"`,
  );
}

// NOTE: this also rejects files whose weights are fine but whose other entries contain objects
// such as numpy arrays, so the message gives the Python line that re-saves the weights alone.
function rejectGlobal(source: string, module: string, name: string): never {
  const fullName = `${module}.${name}`;
  throw new CheckpointError(
    `${source}: data.pkl refers to the Python global '${fullName}', which is not allowed. A checkpoint may name only ` +
      `tensor rebuild functions, torch storage types and plain containers (${[...ALLOWED_GLOBALS.keys()].join(', ')}), ` +
      `and nothing from the file was run. If you trust the file, re-save its weights alone with Python: ` +
      `torch.save(torch.load('${source}', map_location='cpu', weights_only=False)['state_dict'], 'weights.pth')`,
  );
}

/** Finds the top folder's `data.pkl` of an archive written by torch.save. */
function findPickleEntry(archive: ZipArchive): { folder: string; name: string } {
  const candidates = archive.entries.map((entry) => entry.name).filter((name) => /^[^/]+\/data\.pkl$/.test(name) || name === 'data.pkl');
  if (candidates.length !== 1) {
    const shown = archive.entries.slice(0, 5).map((entry) => entry.name);
    const found = candidates.length === 0 ? 'no' : `${candidates.length}`;
    throw new CheckpointError(
      `${archive.source} is a zip archive with ${found} top-level data.pkl, so not a torch.save checkpoint ` +
        `(first entries: ${shown.join(', ') || 'none'})`,
    );
  }
  const name = candidates[0]!;
  return { folder: name.includes('/') ? name.slice(0, name.indexOf('/')) : '', name };
}

export interface DecodeTorchOptions {
  /**
   * Check the CRC-32 of every storage entry. Default false, as in torch.load: PyTorch builds
   * its zip reader with MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS, and the check would double the
   * read time. The CRC of data.pkl is always checked.
   */
  verifyChecksums?: boolean;
}

/**
 * Parses a checkpoint written by `torch.save` (zip format) from memory. Tensors stay views of
 * `bytes` where they can. Throws a CheckpointError naming `source` for a legacy-format file,
 * a corrupt archive, a TorchScript archive, or a pickle that names a global outside the allow-list.
 */
export function decodeTorchCheckpoint(bytes: Uint8Array, source: string, options: DecodeTorchOptions = {}): TorchCheckpoint {
  if (isLegacyTorchFormat(bytes)) throw legacyFormatError(source);
  if (!looksLikeZip(bytes)) throw new CheckpointError(`${source} is not a PyTorch zip checkpoint (it does not start with a zip header)`);
  const archive = new ZipArchive(bytes, source);
  const { folder, name } = findPickleEntry(archive);
  const prefix = folder === '' ? '' : `${folder}/`;
  if (archive.get(`${prefix}constants.pkl`) !== undefined) {
    throw new CheckpointError(`${source} is a TorchScript archive (torch.jit.save), not a checkpoint; save the model's state_dict() with torch.save instead`);
  }
  const verify = options.verifyChecksums ?? false;

  const byteOrderEntry = archive.get(`${prefix}byteorder`);
  const byteOrder = byteOrderEntry === undefined ? 'little' : new TextDecoder().decode(archive.read(byteOrderEntry)).trim();
  if (byteOrder !== 'little' && byteOrder !== 'big') throw new CheckpointError(`${source}: ${prefix}byteorder is '${byteOrder}', expected 'little' or 'big'`);
  const swap = (byteOrder === 'little') !== HOST_IS_LITTLE_ENDIAN;

  const storages = new Map<string, TorchStorage>();
  const root = unpickle(archive.read(archive.get(name)!, true), {
    source: `${source}: ${name}`,
    resolveGlobal: (module, globalName) => {
      const allowed = ALLOWED_GLOBALS.get(`${module}.${globalName}`);
      if (allowed !== undefined) return allowed;
      const dtype = module === 'torch' ? STORAGE_DTYPES[globalName] : undefined;
      if (dtype !== undefined) return new StorageType(globalName, dtype);
      return rejectGlobal(source, module, globalName);
    },
    persistentLoad: (pid) => {
      const { type, key, numel } = parseStoragePid(pid);
      const existing = storages.get(key);
      if (existing !== undefined) return existing;
      const entryName = `${prefix}data/${key}`;
      const entry = archive.get(entryName);
      if (entry === undefined) throw new CheckpointError(`${source}: storage '${key}' has no zip entry ${entryName}`);
      const storage = new TorchStorage(key, type.dtype, numel, () => {
        const data = archive.read(entry, verify);
        if (data.byteLength !== numel * DTYPE_BYTES[type.dtype]) {
          throw new CheckpointError(`${source}: ${entryName} has ${data.byteLength} bytes, but ${numel} ${type.dtype} elements need ${numel * DTYPE_BYTES[type.dtype]}`);
        }
        return swap ? new Uint8Array(bytesAsElements(type.dtype, data, true).buffer) : data;
      });
      storages.set(key, storage);
      return storage;
    },
  });
  return { root, folder };
}

/** Reads and parses a torch.save checkpoint file. */
export async function readTorchCheckpoint(path: string, options: DecodeTorchOptions = {}): Promise<TorchCheckpoint> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new CheckpointError(`checkpoint ${path} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  return decodeTorchCheckpoint(bytes, path, options);
}
