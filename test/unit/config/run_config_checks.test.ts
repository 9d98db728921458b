import test from 'ava';

import { loadDetectionConfig } from '../../../src/apis/config_loading.ts';
import { ConfigError } from '../../../src/utils/errors.ts';

const QUICKSTART = 'configs/quickstart/retinanet_rla_tiny_coco_mini.ts';

/** Each override and the message it must raise. */
const CASES: Array<[string, string]> = [
  ['runner.maxEpoch=1', "runner: unknown option 'maxEpoch' (did you mean 'maxEpochs'?). Known options: type, maxEpochs, workers"],
  ['runner.maxEpochs=abc', 'runner.maxEpochs: expected a positive integer, got "abc"'],
  ['runner.maxEpochs=-1', 'runner.maxEpochs: expected a positive integer, got -1'],
  ['data.imagesPerBtch=2', "data: unknown option 'imagesPerBtch' (did you mean 'imagesPerBatch'?). Known options: imagesPerBatch, prefetch, workers, train, val, test"],
  ['data.imagesPerBatch=0', 'data.imagesPerBatch: expected a positive integer, got 0'],
  ['lrConfig.step=[5,3]', 'lrConfig.step: expected epoch numbers in increasing order, got [5,3]'],
  ['lrConfig.warmup=cosine', 'lrConfig.warmup: expected one of "linear", "constant", null, got "cosine"'],
  ['lrConfig.warmupRatio=0', 'lrConfig.warmupRatio: expected a number in (0, 1], got 0'],
  ['evaluation.intervl=2', "evaluation: unknown option 'intervl' (did you mean 'interval'?). Known options: interval, metric"],
  ['checkpointConfig.interval=0.5', 'checkpointConfig.interval: expected a positive integer, got 0.5'],
  ['logConfig.interval=0', 'logConfig.interval: expected a positive integer, got 0'],
  ['autoScaleLr.enabled=true', "autoScaleLr: unknown option 'enabled' (did you mean 'enable'?). Known options: enable, baseBatchSize"],
  ['optimizerConfig.gradClip.maxNorm=0', 'optimizerConfig.gradClip.maxNorm: expected a positive number, got 0'],
  ['seed=1.5', 'seed: expected a non-negative integer, got 1.5'],
  ['loadFrom=3', 'loadFrom: expected a checkpoint path or null, got 3'],
];

for (const [override, message] of CASES) {
  test(`run config rejects ${override}`, async (t) => {
    const error = await t.throwsAsync(loadDetectionConfig(QUICKSTART, [override]), { instanceOf: ConfigError });
    t.is(error!.message, `${QUICKSTART}: ${message}`);
  });
}

test('run config rejects unknown top-level key', async (t) => {
  const error = await t.throwsAsync(loadDetectionConfig(QUICKSTART, ['evalution={"interval":1}']), { instanceOf: ConfigError });
  t.true(error!.message.startsWith(`${QUICKSTART}: config: unknown option 'evalution' (did you mean 'evaluation'?). Known options: model, data,`), error!.message);
});

test('shipped detection configs pass the checks', async (t) => {
  for (const path of [
    QUICKSTART,
    'configs/retinanet/retinanet_r50_fpn_1x_coco.ts',
    'configs/retinanet/retinanet_r101_fpn_1x_coco.ts',
    'configs/rla_resnet/retinanet_rla_r50_fpn_1x_coco.ts',
    'configs/rla_resnet/retinanet_rla_r101_fpn_1x_coco.ts',
  ]) {
    const config = await loadDetectionConfig(path, ['lrConfig.warmup=null', 'optimizerConfig.gradClip=null']);
    t.is(config.lrConfig.warmup, null, path);
  }
});
