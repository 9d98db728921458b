import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import { RetinaHead } from '../../../src/models/dense_heads/retina_head.ts';
import { RLAResNet } from '../../../src/models/backbones/rla_resnet.ts';
import { ResNet } from '../../../src/models/backbones/resnet.ts';
import { FPN } from '../../../src/models/necks/fpn.ts';
import { buildNorm, resolveNorm } from '../../../src/models/norm.ts';
import { BatchNorm2d, GroupNorm } from '../../../src/nn/layers.ts';
import { SyncBatchNorm2d } from '../../../src/nn/sync_batch_norm.ts';
import { setInitSeed } from '../../../src/nn/init.ts';
import { ConfigError } from '../../../src/utils/errors.ts';

test.before(async () => {
  await tf.setBackend('cpu');
});

test('resolveNorm accepts SyncBN', (t) => {
  t.deepEqual(resolveNorm('SyncBN', 'model.backbone'), { type: 'SyncBN', numGroups: 32, requiresGrad: true });
  t.deepEqual(resolveNorm({ type: 'SyncBN', requiresGrad: false }, 'model.backbone'), { type: 'SyncBN', numGroups: 32, requiresGrad: false });
});

test('resolveNorm rejects unknown types', (t) => {
  const cases: Array<[unknown, string]> = [
    ['LN', 'model.neck.norm.type: expected \'BN\', \'SyncBN\' or \'GN\', got "LN"'],
    [{ type: 'SyncBn' }, 'model.neck.norm.type: expected \'BN\', \'SyncBN\' or \'GN\', got "SyncBn"'],
    [{ type: 'SyncBN', momentum: 0.01 }, "model.neck.norm: unknown option 'momentum'"],
  ];
  for (const [value, message] of cases) {
    const error = t.throws(() => resolveNorm(value as never, 'model.neck'), { instanceOf: ConfigError });
    t.true(error!.message.startsWith(message), error!.message);
  }
});

test('buildNorm builds SyncBatchNorm2d', (t) => {
  const norm = resolveNorm('SyncBN', 'model.backbone');
  const layer = buildNorm(norm, 6, 'model.backbone');
  const zeroed = buildNorm(norm, 6, 'model.backbone', true);
  t.true(layer instanceof SyncBatchNorm2d);
  t.deepEqual(Array.from(layer.weight.dataSync()), [1, 1, 1, 1, 1, 1]);
  t.deepEqual(Array.from(zeroed.weight.dataSync()), [0, 0, 0, 0, 0, 0]);
  t.deepEqual([...layer.stateDict().keys()], ['weight', 'bias', 'running_mean', 'running_var']);
  layer.dispose();
  zeroed.dispose();
});

/** Names of the norm layers of `module` and their classes. */
function normLayers(module: { namedModules(): Array<[string, unknown]> }): Array<[string, string]> {
  return module
    .namedModules()
    .filter(([, child]) => child instanceof BatchNorm2d || child instanceof GroupNorm)
    .map(([name, child]) => [name, (child as object).constructor.name]);
}

test('SyncBN backbones keep BN names', (t) => {
  for (const build of [
    (norm: 'BN' | 'SyncBN') => new ResNet({ stageBlocks: [1, 1, 1, 1], baseChannels: 8, norm }),
    (norm: 'BN' | 'SyncBN') => new RLAResNet({ stageBlocks: [1, 1, 1, 1], baseChannels: 8, rlaChannels: 8, norm }),
  ]) {
    setInitSeed(3);
    const plain = build('BN');
    setInitSeed(3);
    const synced = build('SyncBN');
    const plainLayers = normLayers(plain);
    const syncedLayers = normLayers(synced);
    t.true(syncedLayers.length > 10);
    t.deepEqual(
      syncedLayers.map(([name]) => name),
      plainLayers.map(([name]) => name),
    );
    t.true(syncedLayers.every(([, kind]) => kind === 'SyncBatchNorm2d'));
    t.true(plainLayers.every(([, kind]) => kind === 'BatchNorm2d'));
    t.deepEqual([...synced.stateDict().keys()], [...plain.stateDict().keys()]);
    // normEval (on by default) and frozen stages treat SyncBN as batch norm.
    t.true(synced.namedModules().every(([, module]) => !(module instanceof SyncBatchNorm2d) || module.useRunningStats));
    plain.dispose();
    synced.dispose();
  }
});

test('SyncBN in neck and head is named bn', (t) => {
  const neck = new FPN({ inChannels: [16, 32], outChannels: 8, numOuts: 2, norm: 'SyncBN' });
  t.deepEqual(
    normLayers(neck).map(([name]) => name),
    ['lateral_convs.0.bn', 'lateral_convs.1.bn', 'fpn_convs.0.bn', 'fpn_convs.1.bn'],
  );
  t.true(normLayers(neck).every(([, kind]) => kind === 'SyncBatchNorm2d'));
  const head = new RetinaHead({ numClasses: 3, inChannels: 8, featChannels: 8, stackedConvs: 1, norm: 'SyncBN' });
  t.deepEqual(
    normLayers(head).map(([name]) => name),
    ['cls_convs.0.bn', 'reg_convs.0.bn'],
  );
  t.false(head.namedParameters().some(([name]) => name === 'cls_convs.0.conv.bias'));
  neck.dispose();
  head.dispose();
});
