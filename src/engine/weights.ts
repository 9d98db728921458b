import * as tf from '@tensorflow/tfjs-core';

import { toFloat32Array, type SafetensorsTensor } from '../io/safetensors.ts';
import { describeWeightFile, readWeightFile, type WeightFile } from '../io/weight_file.ts';
import { Conv2d, Linear } from '../nn/layers.ts';
import type { Module } from '../nn/module.ts';
import { CheckpointError } from '../utils/errors.ts';
import { getLogger } from '../utils/logger.ts';

/**
 * Maps the state dict of a checkpoint onto an rladet module and copies the weights in, like
 * MMCV's non-strict `load_checkpoint` (MMDetection 2.x):
 *
 * - a leading 'module.' (torch.nn.DataParallel) is removed from every key;
 * - with `prefix`, only keys under it are used, with the prefix removed (MMCV's Pretrained
 *   `prefix`, e.g. 'backbone.' to take the backbone out of a detector checkpoint);
 * - PyTorch layouts become rladet's: convolution weights OIHW to HWIO, linear weights
 *   [out, in] to [in, out]; batch-norm running statistics map by name;
 * - `num_batches_tracked` counters and the ImageNet classifier's own layers (top-level `fc`,
 *   and the official RLA-Net classifier's `bn2`) are skipped and listed;
 * - missing and unexpected keys are reported in one table, while a shape mismatch, a
 *   checkpoint of another depth, or a checkpoint that matches nothing is an error.
 */

const logger = getLogger('weights');

const DATA_PARALLEL_PREFIX = 'module.';
const NUM_BATCHES_TRACKED = 'num_batches_tracked';
/** Top-level modules of ImageNet classifiers that detection backbones do not have. */
const CLASSIFIER_ONLY_MODULES = ['fc', 'bn2'];

export interface LoadWeightsOptions {
  /** Use only the keys under this prefix, removing it; a missing trailing '.' is added. */
  prefix?: string;
  /** Fail when a parameter or buffer of the model is missing from the checkpoint. Default false. */
  strict?: boolean;
  /** Names the receiving module in messages, e.g. 'model.backbone'. Default 'model'. */
  target?: string;
}

/** Outcome of a load: which keys went where. Key names are as in the model (after prefix removal). */
export interface WeightLoadReport {
  source: string;
  target: string;
  /** Format and state-dict location of the file. */
  description: string;
  /** Prefixes removed from the checkpoint keys, in order. */
  removedPrefixes: string[];
  loaded: string[];
  /** Model parameters and buffers that the checkpoint lacks; they keep their initial values. */
  missing: string[];
  /** Checkpoint tensors that match nothing in the model. */
  unexpected: string[];
  /** Classifier layers skipped because the model has no such module. */
  classifierOnly: string[];
  /** BatchNorm step counters, which rladet does not keep. */
  numBatchesTracked: string[];
  /** State-dict entries that are not tensors. */
  nonTensor: string[];
}

/** Layout change of a parameter from PyTorch to rladet: a convolution weight, a linear weight, or none. */
export type LayoutKind = 'conv' | 'linear' | 'same';

interface Assignment {
  name: string;
  variable: tf.Variable;
  tensor: SafetensorsTensor;
  kind: LayoutKind;
}

/** Marks each parameter that needs a layout change by the module that owns it. */
function layoutKinds(model: Module): Map<string, LayoutKind> {
  const kinds = new Map<string, LayoutKind>();
  for (const [name, module] of model.namedModules()) {
    const key = name === '' ? 'weight' : `${name}.weight`;
    if (module instanceof Conv2d) kinds.set(key, 'conv');
    else if (module instanceof Linear) kinds.set(key, 'linear');
  }
  return kinds;
}

/** Returns the shape of a `layout` tensor in rladet's layout, or undefined when its rank does not fit. */
function rladetShape(shape: readonly number[], kind: LayoutKind, layout: WeightFile['layout']): number[] | undefined {
  if (layout === 'rladet' || kind === 'same') return [...shape];
  if (kind === 'conv') return shape.length === 4 ? [shape[2]!, shape[3]!, shape[1]!, shape[0]!] : undefined;
  return shape.length === 2 ? [shape[1]!, shape[0]!] : undefined;
}

/** Returns a model shape in PyTorch's layout (the inverse of `rladetShape`), for messages. */
function pytorchShape(shape: readonly number[], kind: LayoutKind): number[] {
  if (kind === 'conv' && shape.length === 4) return [shape[3]!, shape[2]!, shape[0]!, shape[1]!];
  if (kind === 'linear' && shape.length === 2) return [shape[1]!, shape[0]!];
  return [...shape];
}

function layoutName(kind: LayoutKind, layout: WeightFile['layout']): string {
  if (kind === 'conv') return layout === 'pytorch' ? ' (OIHW)' : ' (HWIO)';
  if (kind === 'linear') return layout === 'pytorch' ? ' ([out, in])' : ' ([in, out])';
  return '';
}

const formatShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/**
 * Copies OIHW elements into HWIO order; a [rows, columns] matrix is the case H = W = 1 and
 * comes out transposed. Output channels are handled in blocks of 16, so the writes go to runs
 * of adjacent elements. This ran about three times faster than one output channel at a time.
 */
function oihwToHwio(source: Float32Array, [outChannels, inChannels, height = 1, width = 1]: number[]): Float32Array {
  const result = new Float32Array(source.length);
  const spatial = height * width;
  const outStride = inChannels! * spatial;
  const block = 16;
  for (let first = 0; first < outChannels!; first += block) {
    const last = Math.min(outChannels!, first + block);
    for (let i = 0; i < inChannels!; i++) {
      for (let s = 0; s < spatial; s++) {
        const row = (s * inChannels! + i) * outChannels!;
        let read = (first * inChannels! + i) * spatial + s;
        for (let o = first; o < last; o++) {
          result[row + o] = source[read]!;
          read += outStride;
        }
      }
    }
  }
  return result;
}

/** Returns the values of a checkpoint tensor as float32 in rladet's layout. */
export function toRladetLayout(tensor: SafetensorsTensor, kind: LayoutKind, layout: WeightFile['layout']): Float32Array {
  const values = toFloat32Array(tensor);
  if (layout === 'rladet' || kind === 'same') return values;
  return oihwToHwio(values, tensor.shape);
}

/** Removes `prefix` from every key that has it; returns the new map and how many keys had it. */
function removePrefix(tensors: Map<string, SafetensorsTensor>, prefix: string): { tensors: Map<string, SafetensorsTensor>; count: number } {
  const result = new Map<string, SafetensorsTensor>();
  let count = 0;
  for (const [name, tensor] of tensors) {
    if (name.startsWith(prefix)) count += 1;
    result.set(name.startsWith(prefix) ? name.slice(prefix.length) : name, tensor);
  }
  return { tensors: result, count };
}

/** First segments of the keys ('backbone.', 'neck.', ...), for messages. */
function topLevelNames(keys: Iterable<string>): string[] {
  return [...new Set([...keys].map((key) => (key.includes('.') ? key.slice(0, key.indexOf('.') + 1) : key)))];
}

/**
 * Compresses a key list for a table cell: keys with the same parent are joined as
 * `parent.{a,b}`, and after `limit` groups the rest is counted.
 */
export function summarizeKeys(keys: readonly string[], limit = 8): string {
  const groups = new Map<string, string[]>();
  for (const key of keys) {
    const cut = key.lastIndexOf('.');
    const parent = cut < 0 ? '' : key.slice(0, cut);
    const leaves = groups.get(parent) ?? [];
    leaves.push(key.slice(cut + 1));
    groups.set(parent, leaves);
  }
  const parts = [...groups].map(([parent, leaves]) => {
    const leafText = leaves.length === 1 ? leaves[0]! : `{${leaves.join(',')}}`;
    return parent === '' ? leafText : `${parent}.${leafText}`;
  });
  const shown = parts.slice(0, limit).join(', ');
  const rest = parts.length - limit;
  return rest > 0 ? `${shown}, ... (${rest} more ${rest === 1 ? 'group' : 'groups'})` : shown;
}

/** Returns the BatchNorm module names of `num_batches_tracked` keys, which are shorter to list than the keys. */
export function batchNormNames(numBatchesTrackedKeys: readonly string[]): string[] {
  return numBatchesTrackedKeys.map((key) => (key === NUM_BATCHES_TRACKED ? key : key.slice(0, -NUM_BATCHES_TRACKED.length - 1)));
}

/** Blocks per ResNet stage, from keys like `layer3.5.conv1.weight` or `backbone.stages.2.5.bn1.bias`. */
function blocksPerStage(keys: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const key of keys) {
    const match = /^(.*?(?:layer\d+|stages\.\d+))\.(\d+)\./.exec(key);
    if (match === null) continue;
    counts.set(match[1]!, Math.max(counts.get(match[1]!) ?? 0, Number(match[2]) + 1));
  }
  return counts;
}

function checkSameDepth(checkpointKeys: Iterable<string>, modelKeys: Iterable<string>, source: string, target: string): void {
  const inCheckpoint = blocksPerStage(checkpointKeys);
  const inModel = blocksPerStage(modelKeys);
  const differing = [...inModel].filter(([stage, blocks]) => inCheckpoint.has(stage) && inCheckpoint.get(stage) !== blocks);
  if (differing.length === 0) return;
  const list = (counts: Map<string, number>) => [...counts.values()].join(', ');
  const [stage, blocks] = differing[0]!;
  throw new CheckpointError(
    `${source} was saved from a network of another depth than ${target}: ${stage} has ${inCheckpoint.get(stage)} blocks in the ` +
      `checkpoint but ${blocks} in the model (blocks per stage: checkpoint [${list(inCheckpoint)}], model [${list(inModel)}]). ` +
      `Set the backbone's depth (or stageBlocks) to match the checkpoint, or use a checkpoint of this depth.`,
  );
}

/** Explains why no key matched, suggesting a prefix or a target when one would fit. */
function noMatchError(checkpointKeys: string[], modelKeys: string[], source: string, target: string): CheckpointError {
  const sample = (keys: string[]) => keys.slice(0, 2).map((key) => `'${key}'`).join(', ');
  let hint = '';
  const probe = checkpointKeys.find((key) => !key.endsWith(NUM_BATCHES_TRACKED));
  const containing = probe === undefined ? undefined : modelKeys.find((key) => key.endsWith(`.${probe}`));
  const contained = modelKeys.length === 0 ? undefined : checkpointKeys.find((key) => key.endsWith(`.${modelKeys[0]}`));
  if (probe !== undefined && containing !== undefined) {
    const part = containing.slice(0, containing.length - probe.length);
    hint = ` The checkpoint fits the model's '${part}' part: give it as init: {type: 'Pretrained', checkpoint} on ${target}.${part.slice(0, -1)} instead.`;
  } else if (contained !== undefined) {
    hint = ` The model fits the checkpoint's '${contained.slice(0, contained.length - modelKeys[0]!.length)}' part: set that as the prefix.`;
  }
  return new CheckpointError(
    `no tensor of ${source} matches a parameter of ${target}: checkpoint keys look like ${sample(checkpointKeys) || '(none)'} ` +
      `(top level: ${topLevelNames(checkpointKeys).join(' ') || 'none'}), model keys like ${sample(modelKeys)}.${hint}`,
  );
}

/** The tensors to copy and the report, after every check passed. Nothing is modified yet. */
export interface WeightLoadPlan {
  assignments: Assignment[];
  layout: WeightFile['layout'];
  report: WeightLoadReport;
}

/** Matches the checkpoint's keys and shapes against `model`; throws a CheckpointError on a mismatch. */
export function planWeightLoad(file: WeightFile, model: Module, options: LoadWeightsOptions = {}): WeightLoadPlan {
  const source = file.path;
  const target = options.target ?? 'model';
  const removedPrefixes: string[] = [];

  let { tensors, count } = removePrefix(file.tensors, DATA_PARALLEL_PREFIX);
  if (count > 0) removedPrefixes.push(DATA_PARALLEL_PREFIX);
  if (options.prefix !== undefined && options.prefix !== '') {
    const prefix = options.prefix.endsWith('.') ? options.prefix : `${options.prefix}.`;
    const selected = new Map([...tensors].filter(([name]) => name.startsWith(prefix)).map(([name, tensor]) => [name.slice(prefix.length), tensor]));
    if (selected.size === 0) {
      throw new CheckpointError(`prefix '${prefix}' matches no key of ${source}; its keys start with ${topLevelNames(tensors.keys()).join(' ') || '(nothing)'}`);
    }
    tensors = selected;
    removedPrefixes.push(prefix);
  }

  const state = model.stateDict();
  const kinds = layoutKinds(model);
  const topLevelModules = new Set(model.children().map(([name]) => name));
  const report: WeightLoadReport = {
    source,
    target,
    description: describeWeightFile(file),
    removedPrefixes,
    loaded: [],
    missing: [],
    unexpected: [],
    classifierOnly: [],
    numBatchesTracked: [],
    nonTensor: [...file.nonTensorKeys],
  };

  const matched: Array<[string, SafetensorsTensor]> = [];
  for (const [name, tensor] of tensors) {
    const topLevel = name.split('.')[0]!;
    if (state.has(name)) matched.push([name, tensor]);
    else if (name === NUM_BATCHES_TRACKED || name.endsWith(`.${NUM_BATCHES_TRACKED}`)) report.numBatchesTracked.push(name);
    else if (CLASSIFIER_ONLY_MODULES.includes(topLevel) && !topLevelModules.has(topLevel)) report.classifierOnly.push(name);
    else report.unexpected.push(name);
  }
  report.missing = [...state.keys()].filter((name) => !tensors.has(name));

  checkSameDepth(tensors.keys(), state.keys(), source, target);
  if (matched.length === 0) throw noMatchError([...tensors.keys()], [...state.keys()], source, target);

  const assignments: Assignment[] = [];
  for (const [name, tensor] of matched) {
    const variable = state.get(name)!;
    const kind = kinds.get(name) ?? 'same';
    const converted = rladetShape(tensor.shape, kind, file.layout);
    if (converted === undefined || converted.join(',') !== variable.shape.join(',')) {
      const modelShape = file.layout === 'pytorch' ? pytorchShape(variable.shape, kind) : variable.shape;
      const rladetNote = file.layout === 'pytorch' && kind !== 'same' ? `, ${formatShape(variable.shape)} in rladet's layout` : '';
      throw new CheckpointError(
        `${source}: shape mismatch for '${name}': the checkpoint has ${formatShape(tensor.shape)} but ${target} expects ` +
          `${formatShape(modelShape)}${layoutName(kind, file.layout)}${rladetNote}. Was the checkpoint saved from another configuration ` +
          `(depth, widthPerGroup, channels or number of classes)?`,
      );
    }
    assignments.push({ name, variable, tensor, kind });
    report.loaded.push(name);
  }

  if (options.strict === true && report.missing.length > 0) {
    throw new CheckpointError(
      `${source} lacks ${report.missing.length} parameters and buffers of ${target}: ${summarizeKeys(report.missing)}. ` +
        `Was it saved from another configuration?`,
    );
  }
  return { assignments, layout: file.layout, report };
}

/** Copies the planned tensors into the model's variables. */
export function applyWeightLoad(plan: WeightLoadPlan): void {
  for (const { variable, tensor, kind } of plan.assignments) {
    const values = toRladetLayout(tensor, kind, plan.layout);
    tf.tidy(() => variable.assign(tf.tensor(values, variable.shape, 'float32')));
  }
}

/** Renders the report as the table that loading logs. */
export function formatWeightLoadReport(report: WeightLoadReport): string {
  const removed = report.removedPrefixes.length === 0 ? '' : `; removed key prefix ${report.removedPrefixes.map((prefix) => `'${prefix}'`).join(' and ')}`;
  const rows: Array<[string, string[]]> = [
    ['missing in checkpoint (left as initialised)', report.missing],
    ['unexpected in checkpoint (ignored)', report.unexpected],
    ['skipped: classifier only', report.classifierOnly],
    ['skipped: num_batches_tracked of', batchNormNames(report.numBatchesTracked)],
    ['skipped: not tensors', report.nonTensor],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = [
    `loaded ${report.loaded.length} tensors into ${report.target} from ${report.source} (${report.description}${removed})`,
    `  ${'keys'.padEnd(width)}  count  names`,
    ...rows.map(([label, keys]) => `  ${label.padEnd(width)}  ${String(keys.length).padStart(5)}  ${summarizeKeys(keys)}`.trimEnd()),
  ];
  return lines.join('\n');
}

/**
 * Reads a checkpoint of any supported format and loads it into `model` (see the module
 * comment for the rules). Logs the report table, as a warning when keys are missing or
 * unexpected, and returns the file and the report.
 */
export async function loadWeights(path: string, model: Module, options: LoadWeightsOptions = {}): Promise<{ file: WeightFile; report: WeightLoadReport }> {
  const file = await readWeightFile(path);
  const plan = planWeightLoad(file, model, options);
  applyWeightLoad(plan);
  const { report } = plan;
  const table = formatWeightLoadReport(report);
  if (report.missing.length > 0 || report.unexpected.length > 0) logger.warn(table);
  else logger.info(table);
  return { file, report };
}

/** Guesses the layout change of a PyTorch tensor from its rank alone: 4-D convolution, 2-D linear. */
export function layoutKindOfRank(rank: number): LayoutKind {
  if (rank === 4) return 'conv';
  if (rank === 2) return 'linear';
  return 'same';
}

/** Outcome of `convertByName`. */
export interface NameConversion {
  /** Float32 tensors in rladet's layout, by key after prefix removal. */
  tensors: Map<string, SafetensorsTensor>;
  removedPrefixes: string[];
  /** Keys whose tensor went from OIHW to HWIO (4-D) or from [out, in] to [in, out] (2-D). */
  convolutions: string[];
  matrices: string[];
  numBatchesTracked: string[];
  nonTensor: string[];
}

/**
 * Converts a checkpoint's state dict to rladet's layout without a model, by name and rank
 * alone: 'module.' and `prefix` are removed as in `planWeightLoad`, num_batches_tracked is
 * dropped, and a PyTorch-layout tensor of rank 4 is taken as a convolution weight and one of
 * rank 2 as a linear weight.
 */
export function convertByName(file: WeightFile, options: { prefix?: string } = {}): NameConversion {
  const removedPrefixes: string[] = [];
  let { tensors, count } = removePrefix(file.tensors, DATA_PARALLEL_PREFIX);
  if (count > 0) removedPrefixes.push(DATA_PARALLEL_PREFIX);
  if (options.prefix !== undefined && options.prefix !== '') {
    const prefix = options.prefix.endsWith('.') ? options.prefix : `${options.prefix}.`;
    tensors = new Map([...tensors].filter(([name]) => name.startsWith(prefix)).map(([name, tensor]) => [name.slice(prefix.length), tensor]));
    if (tensors.size === 0) throw new CheckpointError(`prefix '${prefix}' matches no key of ${file.path}`);
    removedPrefixes.push(prefix);
  }

  const result: NameConversion = { tensors: new Map(), removedPrefixes, convolutions: [], matrices: [], numBatchesTracked: [], nonTensor: [...file.nonTensorKeys] };
  for (const [name, tensor] of tensors) {
    if (name === NUM_BATCHES_TRACKED || name.endsWith(`.${NUM_BATCHES_TRACKED}`)) {
      result.numBatchesTracked.push(name);
      continue;
    }
    const kind = file.layout === 'rladet' ? 'same' : layoutKindOfRank(tensor.shape.length);
    if (kind === 'conv') result.convolutions.push(name);
    if (kind === 'linear') result.matrices.push(name);
    const shape = rladetShape(tensor.shape, kind, file.layout)!;
    result.tensors.set(name, { dtype: 'F32', shape, data: toRladetLayout(tensor, kind, file.layout) });
  }
  return result;
}
