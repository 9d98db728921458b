import dataset from '../_base_/datasets/coco_detection.ts';
import runtime from '../_base_/default_runtime.ts';
import model from '../_base_/models/retinanet_r50_fpn.ts';
import schedule from '../_base_/schedules/schedule_1x.ts';
import { defineConfig, extend } from '../../src/config/config.ts';
import type { DetectionConfig } from '../../src/config/detection_config.ts';

/** RetinaNet R-50-FPN, 1x schedule on COCO 2017. RetinaNet uses lr 0.01 and clips gradients at norm 35. */
const base: DetectionConfig = { model, data: dataset, ...schedule, ...runtime };

export default defineConfig(
  extend(base, {
    optimizer: { lr: 0.01 },
    optimizerConfig: { gradClip: { maxNorm: 35 } },
  }),
);
