import { checkOptionKeys } from '../config/config.ts';
import type { Module } from '../nn/module.ts';
import { ConfigError } from '../utils/errors.ts';

/**
 * The `init` option of backbones and detectors, MMCV's `init_cfg`. Layers initialise
 * themselves when built (Kaiming, constants), so the one initialiser left to configure is
 * loading pretrained weights. `initWeights` (src/engine/pretrained.ts) runs it after the
 * model is built and before training.
 */
export interface PretrainedInitConfig {
  type: 'Pretrained';
  /** Path of a PyTorch checkpoint (.pth, .pth.tar, .pt), a safetensors file or an rladet checkpoint. */
  checkpoint: string;
  /** Use only the checkpoint keys under this prefix, e.g. 'backbone.' of a detector checkpoint. */
  prefix?: string;
}

export type InitConfig = PretrainedInitConfig;

/** A module built from a config that may carry an `init` option. */
export interface ConfigurableInit {
  readonly initConfig: InitConfig | undefined;
  /** Config path of the module, e.g. 'model.backbone'. */
  readonly configPath: string;
}

export function hasInitConfig(module: Module): module is Module & ConfigurableInit {
  return 'initConfig' in module && 'configPath' in module;
}

/** Download locations of the torchvision names that MMDetection configs use (torchvision 0.14 weights). */
const TORCHVISION_URLS: Readonly<Record<string, string>> = {
  resnet50: 'https://download.pytorch.org/models/resnet50-0676ba61.pth',
  resnet101: 'https://download.pytorch.org/models/resnet101-63fe2227.pth',
  resnet152: 'https://download.pytorch.org/models/resnet152-394f9c45.pth',
};

/** Validates an `init` option; `path` is the component's config path. Returns undefined when absent. */
export function resolveInitConfig(path: string, value: unknown): InitConfig | undefined {
  if (value === undefined || value === null) return undefined;
  const initPath = `${path}.init`;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`${initPath}: expected {type: 'Pretrained', checkpoint, prefix?}, got ${JSON.stringify(value)}`);
  }
  const record = value as Record<string, unknown>;
  if (record['type'] !== 'Pretrained') {
    throw new ConfigError(
      `${initPath}.type: only 'Pretrained' is supported (layers already initialise themselves when built), got ${JSON.stringify(record['type'])}`,
    );
  }
  checkOptionKeys(initPath, record, ['type', 'checkpoint', 'prefix']);
  const { checkpoint, prefix } = record;
  if (typeof checkpoint !== 'string' || checkpoint === '') {
    throw new ConfigError(`${initPath}.checkpoint: expected the path of a checkpoint file, got ${JSON.stringify(checkpoint)}`);
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(checkpoint)?.[1];
  if (scheme !== undefined) {
    let url: string | undefined;
    if (scheme === 'torchvision') url = TORCHVISION_URLS[checkpoint.slice(scheme.length + 3)];
    if (scheme === 'http' || scheme === 'https') url = checkpoint;
    const download = url === undefined ? 'Download the file' : `Download ${url}`;
    throw new ConfigError(`${initPath}.checkpoint: '${checkpoint}' is a URL, but rladet reads local files only. ${download} and give its path.`);
  }
  if (prefix !== undefined && typeof prefix !== 'string') {
    throw new ConfigError(`${initPath}.prefix: expected a string such as 'backbone.', got ${JSON.stringify(prefix)}`);
  }
  return { type: 'Pretrained', checkpoint, ...(prefix === undefined ? {} : { prefix }) };
}
