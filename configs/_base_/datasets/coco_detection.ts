import type { TransformConfig } from '../../../src/config/component_types.ts';
import type { DataConfig } from '../../../src/config/detection_config.ts';

/**
 * COCO 2017 detection data in the standard layout under data/coco/, as MMDetection 2.x's
 * configs/_base_/datasets/coco_detection.py: resize to fit 1333x800 keeping the ratio, flip
 * with probability 0.5, ImageNet mean/std in RGB, pad to a multiple of 32; 2 images per batch.
 */
const dataRoot = 'data/coco/';

export const imgNormCfg = { mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375], toRgb: true };

export const trainPipeline: TransformConfig[] = [
  { type: 'LoadImageFromFile' },
  { type: 'LoadAnnotations', withBbox: true },
  { type: 'Resize', imgScale: [1333, 800], keepRatio: true },
  { type: 'RandomFlip', flipRatio: 0.5 },
  { type: 'Normalize', ...imgNormCfg },
  { type: 'Pad', sizeDivisor: 32 },
];

export const testPipeline: TransformConfig[] = [
  { type: 'LoadImageFromFile' },
  { type: 'Resize', imgScale: [1333, 800], keepRatio: true },
  { type: 'Normalize', ...imgNormCfg },
  { type: 'Pad', sizeDivisor: 32 },
];

const data: DataConfig = {
  imagesPerBatch: 2,
  prefetch: 2,
  train: {
    type: 'CocoDataset',
    annFile: `${dataRoot}annotations/instances_train2017.json`,
    imgPrefix: `${dataRoot}train2017/`,
    pipeline: trainPipeline,
  },
  val: {
    type: 'CocoDataset',
    annFile: `${dataRoot}annotations/instances_val2017.json`,
    imgPrefix: `${dataRoot}val2017/`,
    pipeline: testPipeline,
    testMode: true,
  },
  test: {
    type: 'CocoDataset',
    annFile: `${dataRoot}annotations/instances_val2017.json`,
    imgPrefix: `${dataRoot}val2017/`,
    pipeline: testPipeline,
    testMode: true,
  },
};

export default data;
