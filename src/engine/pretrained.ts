import { hasInitConfig } from '../models/init_config.ts';
import type { Module } from '../nn/module.ts';
import { loadWeights, type WeightLoadReport } from './weights.ts';

/**
 * Runs the `init: {type: 'Pretrained', ...}` options of a built model, as MMCV's
 * `BaseModule.init_weights` does. The module tree is walked from the root, and a module with a
 * Pretrained init loads its checkpoint. The inits of its descendants are skipped, so that they
 * cannot overwrite the loaded weights. Loading is non-strict (see src/engine/weights.ts).
 * Returns one report per checkpoint loaded.
 */
export async function initWeights(model: Module): Promise<WeightLoadReport[]> {
  const reports: WeightLoadReport[] = [];
  const visit = async (module: Module): Promise<void> => {
    if (hasInitConfig(module) && module.initConfig !== undefined) {
      const { checkpoint, prefix } = module.initConfig;
      const { report } = await loadWeights(checkpoint, module, { target: module.configPath, ...(prefix === undefined ? {} : { prefix }) });
      reports.push(report);
      return;
    }
    for (const [, child] of module.children()) await visit(child);
  };
  await visit(model);
  return reports;
}
