import type { DatasetConfig } from '../config/component_types.ts';
import type { DataConfig } from '../config/detection_config.ts';
import { CocoDataset } from '../datasets/coco_dataset.ts';
import { DataLoader } from '../datasets/loader.ts';
import type { Detector } from '../models/types.ts';
import { DATASETS, DETECTORS } from '../registry/index.ts';
import { ConfigError } from '../utils/errors.ts';
import '../register_all.ts';

/** Builds the detector of `config.model`. */
export function buildDetector(model: { type: string }): Detector {
  return DETECTORS.build(model, 'model');
}

/** Builds a dataset; only COCO-format datasets are supported by the evaluation for now. */
export function buildDataset(config: DatasetConfig, path: string): CocoDataset {
  const dataset = DATASETS.build(config, path);
  if (!(dataset instanceof CocoDataset)) {
    throw new ConfigError(`${path}.type: evaluation needs a CocoDataset, got '${config.type}'`);
  }
  return dataset;
}

/** A loader for training (shuffled, seeded) or inference (dataset order). */
export function buildLoader(dataset: CocoDataset, data: DataConfig, mode: 'train' | 'test', seed: number): DataLoader {
  return new DataLoader(dataset, {
    batchSize: data.imagesPerBatch,
    shuffle: mode === 'train',
    seed,
    prefetchBatches: data.prefetch ?? 2,
    workers: data.workers ?? 0,
  });
}
