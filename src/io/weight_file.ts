import { readFile } from 'node:fs/promises';

import { CheckpointError } from '../utils/errors.ts';
import { describePickleValue, type PickleValue } from './pickle.ts';
import { decodeSafetensors, type SafetensorsTensor } from './safetensors.ts';
import { TorchTensor, decodeTorchCheckpoint, isLegacyTorchFormat, legacyFormatError, type DecodeTorchOptions } from './torch_checkpoint.ts';
import { looksLikeZip } from './zip.ts';

/**
 * Reads the weights of any checkpoint format rladet supports into one form: a flat map from
 * state-dict keys to tensors, plus where they came from.
 *
 * - PyTorch zip checkpoints (`torch.save`): the state dict is the object itself, or its
 *   'state_dict' entry (MMCV, MMDetection and the official RLA-Net scripts), or its 'model'
 *   entry (torchvision's reference scripts, detectron2).
 * - safetensors files written from PyTorch: every tensor, keys as stored.
 * - rladet checkpoints (safetensors with rladet metadata): the `model.` tensors, prefix removed.
 *
 * Tensors of PyTorch origin keep PyTorch's layouts (OIHW convolution weights, [out, in]
 * linear weights), and `layout` records which convention a file uses.
 */

/** Metadata value that marks an rladet checkpoint (see src/engine/checkpoint.ts). */
const RLADET_CHECKPOINT_FORMAT = 'rladet-checkpoint-v1';
const RLADET_MODEL_PREFIX = 'model.';

export type WeightFormat = 'pytorch' | 'safetensors' | 'rladet';

/** Layout convention of the tensors: PyTorch's (OIHW, [out, in]) or rladet's (HWIO, [in, out]). */
export type WeightLayout = 'pytorch' | 'rladet';

export interface WeightFile {
  path: string;
  format: WeightFormat;
  layout: WeightLayout;
  /** State-dict tensors by key, in file order, with the keys as stored (a 'module.' prefix is kept). */
  tensors: Map<string, SafetensorsTensor>;
  /** State-dict entries that are not tensors, by key. */
  nonTensorKeys: string[];
  /** Top-level key the state dict was found under ('state_dict', 'model'), or '' for the object itself. */
  stateDictKey: string;
  /** Top-level keys of a PyTorch checkpoint that is a dict, such as state_dict, epoch, optimizer. */
  topLevelKeys: string[];
  /** Finished epochs, when the file records them ('epoch' or 'meta.epoch' in PyTorch checkpoints). */
  epoch?: number;
  /** Finished iterations, when recorded. */
  iteration?: number;
}

function formatName(format: WeightFormat): string {
  return { pytorch: 'PyTorch zip checkpoint', safetensors: 'safetensors file', rladet: 'rladet checkpoint' }[format];
}

/** Describes the file for logs, e.g. "PyTorch zip checkpoint, state dict under 'state_dict'". */
export function describeWeightFile(file: WeightFile): string {
  const where = file.stateDictKey === '' ? '' : `, state dict under '${file.stateDictKey}'`;
  return `${formatName(file.format)}${where}`;
}

function isStringKeyedMap(value: PickleValue): value is Map<string, PickleValue> {
  return value instanceof Map && [...value.keys()].every((key) => typeof key === 'string');
}

function integerEntry(map: Map<string, PickleValue>, key: string): number | undefined {
  const value = map.get(key);
  return Number.isSafeInteger(value) ? (value as number) : undefined;
}

/** Picks the state dict out of the unpickled root, following MMCV's `load_checkpoint`. */
function selectStateDict(root: PickleValue, source: string): { stateDict: Map<string, PickleValue>; key: string } {
  if (!isStringKeyedMap(root)) {
    throw new CheckpointError(`${source} contains a ${describePickleValue(root)}, expected a state dict (a dict of tensors) or a dict with a 'state_dict' entry`);
  }
  for (const key of ['state_dict', 'model']) {
    const nested = root.get(key);
    if (nested !== undefined && isStringKeyedMap(nested) && [...nested.values()].some((value) => value instanceof TorchTensor)) {
      return { stateDict: nested, key };
    }
  }
  if ([...root.values()].some((value) => value instanceof TorchTensor)) return { stateDict: root, key: '' };
  throw new CheckpointError(
    `${source} contains no state dict: its top-level keys are ${[...root.keys()].map((key) => `'${key}'`).join(', ') || 'none'}, ` +
      `and neither the dict itself nor its 'state_dict' or 'model' entry contains tensors`,
  );
}

function fromTorchCheckpoint(bytes: Uint8Array, path: string, options: DecodeTorchOptions): WeightFile {
  const { root } = decodeTorchCheckpoint(bytes, path, options);
  const { stateDict, key } = selectStateDict(root, path);
  const tensors = new Map<string, SafetensorsTensor>();
  const nonTensorKeys: string[] = [];
  for (const [name, value] of stateDict) {
    if (!(value instanceof TorchTensor)) {
      nonTensorKeys.push(name);
      continue;
    }
    try {
      tensors.set(name, value.toTensor());
    } catch (error) {
      throw new CheckpointError(`${path}: tensor '${name}': ${(error as Error).message}`, { cause: error });
    }
  }

  const file: WeightFile = { path, format: 'pytorch', layout: 'pytorch', tensors, nonTensorKeys, stateDictKey: key, topLevelKeys: [] };
  if (isStringKeyedMap(root) && key !== '') {
    file.topLevelKeys = [...root.keys()];
    const meta = root.get('meta');
    const epoch = integerEntry(root, 'epoch') ?? (isStringKeyedMap(meta ?? null) ? integerEntry(meta as Map<string, PickleValue>, 'epoch') : undefined);
    const iteration = isStringKeyedMap(meta ?? null) ? integerEntry(meta as Map<string, PickleValue>, 'iter') : undefined;
    if (epoch !== undefined) file.epoch = epoch;
    if (iteration !== undefined) file.iteration = iteration;
  }
  return file;
}

function fromSafetensors(bytes: Uint8Array, path: string): WeightFile {
  const { tensors, metadata } = decodeSafetensors(bytes, path);
  if (metadata['format'] !== RLADET_CHECKPOINT_FORMAT) {
    return { path, format: 'safetensors', layout: 'pytorch', tensors, nonTensorKeys: [], stateDictKey: '', topLevelKeys: [] };
  }
  const modelTensors = new Map<string, SafetensorsTensor>();
  for (const [name, tensor] of tensors) {
    if (name.startsWith(RLADET_MODEL_PREFIX)) modelTensors.set(name.slice(RLADET_MODEL_PREFIX.length), tensor);
  }
  const file: WeightFile = { path, format: 'rladet', layout: 'rladet', tensors: modelTensors, nonTensorKeys: [], stateDictKey: '', topLevelKeys: [] };
  try {
    const record = JSON.parse(metadata['rladet'] ?? '{}') as { epoch?: unknown; iteration?: unknown };
    if (Number.isSafeInteger(record.epoch)) file.epoch = record.epoch as number;
    if (Number.isSafeInteger(record.iteration)) file.iteration = record.iteration as number;
  } catch (error) {
    throw new CheckpointError(`${path}: metadata 'rladet' is not valid JSON: ${(error as Error).message}`);
  }
  return file;
}

/**
 * Returns whether the bytes start like a safetensors file: a header length, then '{'. A header
 * length beyond the file's end still counts, so that a truncated file gets the safetensors
 * reader's error about its size.
 */
function looksLikeSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 9) return false;
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return headerLength >= 2n && bytes[8] === 0x7b;
}

function describeLeadingBytes(bytes: Uint8Array): string {
  const head = bytes.subarray(0, 8);
  return [...head].map((byte) => byte.toString(16).padStart(2, '0')).join(' ');
}

/**
 * Parses a checkpoint held in memory, choosing the format from its first bytes. `path` names
 * the file in errors; `options` apply to PyTorch checkpoints.
 */
export function decodeWeightFile(bytes: Uint8Array, path: string, options: DecodeTorchOptions = {}): WeightFile {
  if (isLegacyTorchFormat(bytes)) throw legacyFormatError(path);
  if (looksLikeZip(bytes)) return fromTorchCheckpoint(bytes, path, options);
  if (looksLikeSafetensors(bytes)) return fromSafetensors(bytes, path);
  throw new CheckpointError(
    `${path} is not a checkpoint: expected a PyTorch zip checkpoint (.pth, .pth.tar, .pt), a safetensors file ` +
      `or an rladet checkpoint, but the file starts with bytes ${describeLeadingBytes(bytes) || '(none: the file is empty)'}`,
  );
}

/** Reads a checkpoint file of any supported format. */
export async function readWeightFile(path: string, options: DecodeTorchOptions = {}): Promise<WeightFile> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new CheckpointError(`checkpoint ${path} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  return decodeWeightFile(bytes, path, options);
}
