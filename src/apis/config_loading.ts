import { basename, join } from 'node:path';

import { applyOverrides, loadConfig } from '../config/config.ts';
import type { DetectionConfig } from '../config/detection_config.ts';
import { checkRunConfig } from '../config/run_config_checks.ts';
import { ConfigError } from '../utils/errors.ts';

/** Loads a detection config file, applies `--cfg-options` overrides and checks the run sections. */
export async function loadDetectionConfig(path: string, overrides: readonly string[] = []): Promise<DetectionConfig> {
  const config = await loadConfig(path);
  applyOverrides(config, overrides);
  for (const key of ['model', 'data', 'optimizer', 'lrConfig', 'runner'] as const) {
    if (config[key] === undefined) throw new ConfigError(`${path}: missing top-level '${key}' (is this a detection config?)`);
  }
  checkRunConfig(config, path);
  return config as unknown as DetectionConfig;
}

/** MMDetection's default work dir: ./work_dirs/<config file name without extension>. */
export function defaultWorkDir(configPath: string): string {
  return join('work_dirs', basename(configPath).replace(/\.[cm]?[jt]s$/, ''));
}
