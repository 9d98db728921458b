import type { BackboneConfig } from '../../src/config/component_types.ts';
import { imgNormCfg } from '../_base_/datasets/coco_detection.ts';
import { defineConfig, extend, replace } from '../../src/config/config.ts';
import type { DetectionConfig } from '../../src/config/detection_config.ts';
import base from '../rla_resnet/retinanet_rla_r50_fpn_1x_coco.ts';

/**
 * Quick start: a small RLA-ResNet RetinaNet trained from scratch on the 26 bundled coco-mini
 * photos and evaluated on the same photos. No pretrained weights are available offline, so
 * the backbone is narrow and shallow, every norm layer trains, images are small, and the score
 * measures how well the model memorises these photos, not how it generalises.
 *
 * The backbone and the head's stacked convolutions use SyncBN. With `runner.workers: 'auto'`
 * on two cores, each worker trains on one image of the two-image batch, and SyncBN computes
 * the batch-norm statistics over both images, as one process does. Plain BN would normalise
 * each worker's single image on its own, so training (per-image statistics) and evaluation
 * (running statistics) would disagree. MMDetection's RetinaNet head has no norm, but this
 * model trained from scratch without one ended 40 epochs at a training loss of 1.18 and AP50
 * 0.08, against 0.25 and 0.61 with SyncBN in the head.
 *
 * From scratch and with two images per batch, SGD at lr 0.02 barely moves: AP50 was 0.02
 * after 10 epochs. AdamW (lr 1e-3, weight decay 1e-4) reaches AP50 of about 0.6 after 40
 * epochs (560 iterations). Evaluation runs once, at the end, to keep the run short.
 */
const scale: [number, number] = [512, 320];
const root = 'data/coco-mini/';
const dataset = (pipeline: DetectionConfig['data']['train']['pipeline'], testMode: boolean) => ({
  type: 'CocoDataset' as const,
  annFile: `${root}annotations/instances_train2017.json`,
  imgPrefix: `${root}train2017/`,
  pipeline,
  testMode,
});

export default defineConfig(
  extend(base, {
    model: {
      backbone: replace<BackboneConfig>({
        type: 'RLAResNet',
        stageBlocks: [1, 1, 1, 1],
        baseChannels: 16,
        frozenStages: -1,
        normEval: false,
        norm: 'SyncBN',
      }),
      neck: { inChannels: [64, 128, 256, 512], outChannels: 64 },
      bboxHead: { inChannels: 64, featChannels: 64, stackedConvs: 2, norm: 'SyncBN' },
    },
    data: replace({
      imagesPerBatch: 2,
      prefetch: 2,
      train: dataset(
        [
          { type: 'LoadImageFromFile' },
          { type: 'LoadAnnotations', withBbox: true },
          { type: 'Resize', imgScale: scale, keepRatio: true },
          { type: 'Normalize', ...imgNormCfg },
          { type: 'Pad', sizeDivisor: 32 },
        ],
        false,
      ),
      val: dataset(
        [
          { type: 'LoadImageFromFile' },
          { type: 'Resize', imgScale: scale, keepRatio: true },
          { type: 'Normalize', ...imgNormCfg },
          { type: 'Pad', sizeDivisor: 32 },
        ],
        true,
      ),
      test: dataset(
        [
          { type: 'LoadImageFromFile' },
          { type: 'Resize', imgScale: scale, keepRatio: true },
          { type: 'Normalize', ...imgNormCfg },
          { type: 'Pad', sizeDivisor: 32 },
        ],
        true,
      ),
    }),
    optimizer: replace({ type: 'AdamW' as const, lr: 0.001, weightDecay: 0.0001 }),
    lrConfig: { warmupIters: 100, step: [30, 36] },
    runner: { maxEpochs: 40, workers: 'auto' },
    autoScaleLr: { enable: false },
    logConfig: { interval: 14 },
    evaluation: { interval: 40 },
    checkpointConfig: { interval: 10 },
    backend: 'wasm',
  }),
);
