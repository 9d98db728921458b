import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../config/config.ts';
import { BatchNorm2d, GroupNorm } from '../nn/layers.ts';
import { SyncBatchNorm2d } from '../nn/sync_batch_norm.ts';
import { ConfigError } from '../utils/errors.ts';

/** Normalisation layers and their config options, shared by backbones and necks. */

/**
 * 'BN' is batch norm, 'GN' group norm, and 'SyncBN' batch norm whose training statistics run
 * over the images of every data-parallel worker (batch norm in a single process).
 */
export type NormType = 'BN' | 'SyncBN' | 'GN';

const NORM_TYPES: readonly NormType[] = ['BN', 'SyncBN', 'GN'];

/** Normalisation layer config, as MMDetection's `norm_cfg`. */
export interface NormOptions {
  type: NormType;
  /** Groups of GroupNorm; default 32. */
  numGroups?: number;
  /** When false, the scale and shift of every norm layer are frozen (MMDetection's requires_grad). */
  requiresGrad?: boolean;
}

export interface ResolvedNorm {
  type: NormType;
  numGroups: number;
  requiresGrad: boolean;
}

export type NormLayer = BatchNorm2d | GroupNorm;

/** Prefix of norm layer names, as MMDetection's build_norm_layer: 'bn' for BN and SyncBN, 'gn' for GN. */
export function normLayerPrefix(norm: ResolvedNorm): 'bn' | 'gn' {
  return norm.type === 'GN' ? 'gn' : 'bn';
}

/**
 * Validates a norm option ('BN', 'SyncBN', 'GN' or a config object) and applies its defaults. `path` is
 * the config path of the component, so errors name `${path}.norm`.
 */
export function resolveNorm(value: NormType | NormOptions | undefined, path: string): ResolvedNorm {
  const options: NormOptions = typeof value === 'string' ? { type: value } : (value ?? { type: 'BN' });
  if (options === null || typeof options !== 'object') {
    throw new ConfigError(`${path}.norm: expected 'BN', 'SyncBN', 'GN' or {type, numGroups?, requiresGrad?}, got ${JSON.stringify(value)}`);
  }
  checkOptionKeys(`${path}.norm`, options, ['type', 'numGroups', 'requiresGrad']);
  if (!NORM_TYPES.includes(options.type)) {
    throw new ConfigError(`${path}.norm.type: expected 'BN', 'SyncBN' or 'GN', got ${JSON.stringify(options.type)}`);
  }
  const numGroups = options.numGroups ?? 32;
  if (!Number.isInteger(numGroups) || numGroups < 1) {
    throw new ConfigError(`${path}.norm.numGroups: expected a positive integer, got ${JSON.stringify(numGroups)}`);
  }
  return { type: options.type, numGroups, requiresGrad: options.requiresGrad ?? true };
}

/** Builds a BatchNorm2d, SyncBatchNorm2d or GroupNorm over `channels` channels, optionally with a zero scale. */
export function buildNorm(norm: ResolvedNorm, channels: number, path: string, zeroInit = false): NormLayer {
  if (norm.type === 'BN') return new BatchNorm2d(channels, { weightInit: zeroInit ? 0 : 1 });
  if (norm.type === 'SyncBN') return new SyncBatchNorm2d(channels, { weightInit: zeroInit ? 0 : 1 });
  if (channels % norm.numGroups !== 0) {
    throw new ConfigError(`${path}.norm.numGroups: ${norm.numGroups} groups do not divide a layer of ${channels} channels`);
  }
  const layer = new GroupNorm(norm.numGroups, channels);
  if (zeroInit) tf.tidy(() => layer.weight.assign(tf.zerosLike(layer.weight)));
  return layer;
}

