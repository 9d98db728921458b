import { defineConfig, extend } from '../../src/config/config.ts';
import base from '../retinanet/retinanet_r50_fpn_1x_coco.ts';

/** RetinaNet with an RLA-ResNet-101 backbone, 1x schedule on COCO 2017. */
export default defineConfig(extend(base, { model: { backbone: { type: 'RLAResNet', depth: 101 } } }));
