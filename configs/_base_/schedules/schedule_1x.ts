import type { DetectionConfig } from '../../../src/config/detection_config.ts';

/**
 * The 1x schedule: 12 epochs of SGD (momentum 0.9, weight decay 1e-4), linear warm-up over
 * 500 iterations from 0.001x, lr x0.1 after epochs 8 and 11. The lr is for 16 images per
 * batch and is scaled linearly to the real batch size (`autoScaleLr`). On wasm and cpu, one
 * data-parallel worker per core shares each batch (`workers: 'auto'`), as MMDetection's
 * distributed training shares it between GPUs.
 */
const schedule: Pick<DetectionConfig, 'optimizer' | 'optimizerConfig' | 'lrConfig' | 'runner' | 'autoScaleLr'> = {
  optimizer: { type: 'SGD', lr: 0.02, momentum: 0.9, weightDecay: 0.0001 },
  optimizerConfig: { gradClip: null },
  lrConfig: { policy: 'step', warmup: 'linear', warmupIters: 500, warmupRatio: 0.001, step: [8, 11] },
  runner: { type: 'EpochBasedRunner', maxEpochs: 12, workers: 'auto' },
  autoScaleLr: { enable: true, baseBatchSize: 16 },
};

export default schedule;
