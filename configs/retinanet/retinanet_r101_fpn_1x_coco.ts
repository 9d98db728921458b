import { defineConfig, extend } from '../../src/config/config.ts';
import base from './retinanet_r50_fpn_1x_coco.ts';

/** RetinaNet R-101-FPN, 1x schedule on COCO 2017. */
export default defineConfig(extend(base, { model: { backbone: { depth: 101 } } }));
