import type { DetectionConfig } from '../../src/config/detection_config.ts';

/** Logging, checkpointing and evaluation cadence, as MMDetection 2.x's default_runtime.py. */
const runtime: Pick<DetectionConfig, 'checkpointConfig' | 'logConfig' | 'evaluation' | 'seed' | 'backend' | 'loadFrom'> = {
  checkpointConfig: { interval: 1 },
  logConfig: { interval: 50 },
  evaluation: { interval: 1, metric: 'bbox' },
  seed: 0,
  backend: 'auto',
  loadFrom: null,
};

export default runtime;
