import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import { FPN, type FPNOptions } from '../../../src/models/necks/fpn.ts';
import { NECKS } from '../../../src/registry/index.ts';
import { ConfigError } from '../../../src/utils/errors.ts';
import { withModel as withBuiltModel } from './backbone_helpers.ts';

const RESNET_CHANNELS = [256, 512, 1024, 2048];
/** C2..C5 sizes of a ResNet for a 97x123 image: the stem gives 25x31, each stage ceil(size / 2). */
const ODD_SIZES: Array<[number, number]> = [
  [25, 31],
  [13, 16],
  [7, 8],
  [4, 4],
];

test.before(async () => {
  await tf.setBackend('cpu');
});

function withNeck<T>(options: FPNOptions, body: (neck: FPN) => T): T {
  return withBuiltModel(new FPN(options), body);
}

function backboneFeatures(channels: number[], sizes: Array<[number, number]>): tf.Tensor4D[] {
  return channels.map((c, i) => tf.randomNormal([2, sizes[i]![0], sizes[i]![1], c], 0, 1, 'float32', i) as tf.Tensor4D);
}

/** Sets every weight of a 1x1 or 3x3 convolution with one input and output channel: `center` at the centre tap, 0 elsewhere. */
function setCenterTap(neck: FPN, name: string, center: number): void {
  const state = neck.stateDict();
  const weight = state.get(`${name}.conv.weight`)!;
  const [kernelHeight, kernelWidth] = weight.shape;
  const values = new Float32Array(weight.size);
  values[Math.floor(kernelHeight! / 2) * kernelWidth! + Math.floor(kernelWidth! / 2)] = center;
  tf.tidy(() => weight.assign(tf.tensor(values, weight.shape)));
}

test('two-stage setting gives P2-P6 with max-pool P6', (t) => {
  withNeck({ inChannels: RESNET_CHANNELS, outChannels: 256, numOuts: 5 }, (neck) => {
    // Laterals (256 + 512 + 1024 + 2048) * 256 + 4 * 256, 3x3 convs 4 * (256 * 256 * 9 + 256).
    t.is(neck.countParameters(), 984_064 + 2_360_320);
    t.is(neck.fpnConvs.length, 4);
    const before = tf.memory().numTensors;
    const features = backboneFeatures(RESNET_CHANNELS, ODD_SIZES);
    const outputs = neck.forward(features);
    t.deepEqual(
      outputs.map((output) => output.shape),
      [
        [2, 25, 31, 256],
        [2, 13, 16, 256],
        [2, 7, 8, 256],
        [2, 4, 4, 256],
        [2, 2, 2, 256],
      ],
    );
    // F.max_pool2d(x, 1, stride=2) keeps the pixels at even rows and columns.
    const p5 = outputs[3]!;
    const expectedP6 = tf.tidy(() => tf.stridedSlice(p5, [0, 0, 0, 0], [2, 4, 4, 256], [1, 2, 2, 1]));
    t.deepEqual(outputs[4]!.arraySync(), expectedP6.arraySync());
    tf.dispose([expectedP6, ...features, ...outputs]);
    t.is(tf.memory().numTensors, before);
  });
});

test('RetinaNet setting gives P3-P7 from C5 convs', (t) => {
  const options: FPNOptions = { inChannels: RESNET_CHANNELS, outChannels: 256, numOuts: 5, startLevel: 1, addExtraConvs: 'on_input' };
  withNeck(options, (neck) => {
    // Laterals (512 + 1024 + 2048) * 256 + 3 * 256, 3x3 convs 3 * 590,080, extra convs 2048 -> 256 and 256 -> 256.
    t.is(neck.countParameters(), 918_272 + 1_770_240 + 4_718_848 + 590_080);
    t.deepEqual(neck.stateDict().get('fpn_convs.3.conv.weight')?.shape, [3, 3, 2048, 256]);
    t.deepEqual(neck.stateDict().get('fpn_convs.4.conv.weight')?.shape, [3, 3, 256, 256]);
    t.false(neck.stateDict().has('lateral_convs.3.conv.weight'));
    const features = backboneFeatures(RESNET_CHANNELS, ODD_SIZES);
    const outputs = neck.forward(features);
    t.deepEqual(
      outputs.map((output) => output.shape),
      [
        [2, 13, 16, 256],
        [2, 7, 8, 256],
        [2, 4, 4, 256],
        [2, 2, 2, 256],
        [2, 1, 1, 256],
      ],
    );
    tf.dispose([...features, ...outputs]);
  });
});

test('top-down pathway uses nearest upsampling', (t) => {
  withNeck({ inChannels: [1, 1, 1], outChannels: 1, numOuts: 3 }, (neck) => {
    for (const name of ['lateral_convs.0', 'lateral_convs.1', 'lateral_convs.2']) setCenterTap(neck, name, 1);
    for (const name of ['fpn_convs.0', 'fpn_convs.1', 'fpn_convs.2']) setCenterTap(neck, name, 1);
    const c5 = [
      [1000, 2000],
      [3000, 4000],
    ];
    const c4 = [
      [10, 20, 30, 40],
      [50, 60, 70, 80],
      [90, 100, 110, 120],
    ];
    const c3 = Array.from({ length: 5 }, (_, row) => Array.from({ length: 7 }, (__, column) => row * 7 + column));
    const toTensor = (grid: number[][]) => tf.tensor4d(grid.flat(), [1, grid.length, grid[0]!.length, 1]);
    const features = [toTensor(c3), toTensor(c4), toTensor(c5)];
    const outputs = neck.forward(features);

    // PyTorch 'nearest' reads source index floor(i * in / out): 2 -> 3 rows [0, 0, 1],
    // 2 -> 4 columns [0, 0, 1, 1], 3 -> 5 rows [0, 0, 1, 1, 2], 4 -> 7 columns [0, 0, 1, 1, 2, 2, 3].
    const p4 = c4.map((row, i) => row.map((value, j) => value + c5[[0, 0, 1][i]!]![[0, 0, 1, 1][j]!]!));
    const p3 = c3.map((row, i) => row.map((value, j) => value + p4[[0, 0, 1, 1, 2][i]!]![[0, 0, 1, 1, 2, 2, 3][j]!]!));
    const asGrid = (output: tf.Tensor4D) => (output.arraySync() as number[][][][])[0]!.map((row) => row.map((cell) => cell[0]!));
    t.deepEqual(asGrid(outputs[2]!), c5);
    t.deepEqual(asGrid(outputs[1]!), p4);
    t.deepEqual(asGrid(outputs[0]!), p3);
    tf.dispose([...features, ...outputs]);
  });
});

test('extra conv sources and ReLU', (t) => {
  // Lateral = 3 * C, output = 2 * lateral, and each extra conv copies the centre pixel of its
  // stride-2 window, so the first extra level is C, 3C or 6C at even positions.
  const expectedScale = { on_input: 1, on_lateral: 3, on_output: 6 } as const;
  // The top-left value is negative, so ReLU before the second extra conv changes its result.
  const c4 = [
    [-1, 2, -3],
    [4, -5, 6],
    [-7, 8, -9],
  ];
  for (const source of ['on_input', 'on_lateral', 'on_output'] as const) {
    for (const reluBeforeExtraConvs of [false, true]) {
      const options: FPNOptions = { inChannels: [1, 1], outChannels: 1, numOuts: 4, addExtraConvs: source, reluBeforeExtraConvs };
      withNeck(options, (neck) => {
        setCenterTap(neck, 'lateral_convs.0', 3);
        setCenterTap(neck, 'lateral_convs.1', 3);
        setCenterTap(neck, 'fpn_convs.0', 2);
        setCenterTap(neck, 'fpn_convs.1', 2);
        setCenterTap(neck, 'fpn_convs.2', 1);
        setCenterTap(neck, 'fpn_convs.3', 1);
        const features = [tf.zeros([1, 6, 6, 1]) as tf.Tensor4D, tf.tensor4d(c4.flat(), [1, 3, 3, 1])];
        const outputs = neck.forward(features);
        const label = `${source}, relu ${reluBeforeExtraConvs}`;

        const scale = expectedScale[source];
        const firstExtra = [
          [c4[0]![0]! * scale, c4[0]![2]! * scale],
          [c4[2]![0]! * scale, c4[2]![2]! * scale],
        ];
        t.deepEqual(outputs[2]!.shape, [1, 2, 2, 1], label);
        t.deepEqual([...outputs[2]!.dataSync()], firstExtra.flat(), label);
        const secondExtra = reluBeforeExtraConvs ? Math.max(firstExtra[0]![0]!, 0) : firstExtra[0]![0]!;
        t.deepEqual([...outputs[3]!.dataSync()], [secondExtra], label);
        tf.dispose([...features, ...outputs]);
      });
    }
  }
});

test('endLevel limits the backbone levels used', (t) => {
  withNeck({ inChannels: RESNET_CHANNELS, outChannels: 16, numOuts: 2, startLevel: 1, endLevel: 2 }, (neck) => {
    t.is(neck.lateralConvs.length, 2);
    t.deepEqual(neck.stateDict().get('lateral_convs.1.conv.weight')?.shape, [1, 1, 1024, 16]);
    const features = backboneFeatures(RESNET_CHANNELS, ODD_SIZES);
    const outputs = neck.forward(features);
    t.deepEqual(
      outputs.map((output) => output.shape),
      [
        [2, 13, 16, 16],
        [2, 7, 8, 16],
      ],
    );
    tf.dispose([...features, ...outputs]);
  });
});

test('Xavier init with zero bias', (t) => {
  withNeck({ inChannels: [64, 128], outChannels: 32, numOuts: 2 }, (neck) => {
    const state = neck.stateDict();
    const weight = state.get('fpn_convs.0.conv.weight')!;
    // Xavier uniform bound sqrt(6 / (fanIn + fanOut)) with fanIn = fanOut = 32 * 9.
    const bound = Math.sqrt(6 / (32 * 9 * 2));
    const values = weight.dataSync();
    t.true(values.every((value) => Math.abs(value) <= bound));
    t.true(values.some((value) => Math.abs(value) > bound / 2));
    t.deepEqual([...new Set(state.get('lateral_convs.1.conv.bias')!.dataSync())], [0]);
  });
});

test('norm option adds norm layers without bias', (t) => {
  const options: FPNOptions = { inChannels: [64, 128], outChannels: 32, numOuts: 3, norm: { type: 'GN', numGroups: 8 }, noNormOnLateral: true };
  withNeck(options, (neck) => {
    const state = neck.stateDict();
    t.deepEqual(state.get('fpn_convs.0.gn.weight')?.shape, [32]);
    t.false(state.has('fpn_convs.0.conv.bias'));
    t.true(state.has('lateral_convs.0.conv.bias'));
    t.false(state.has('lateral_convs.0.gn.weight'));
    const features = backboneFeatures([64, 128], [
      [9, 9],
      [5, 5],
    ]);
    const outputs = neck.forward(features);
    t.deepEqual(outputs[2]!.shape, [2, 3, 3, 32]);
    tf.dispose([...features, ...outputs]);
  });
});

test('invalid options and inputs are rejected', (t) => {
  const cases: Array<[object, string]> = [
    [{ inChannels: RESNET_CHANNELS, outChannels: 256, numOuts: 3 }, 'model.neck.numOuts: must be at least the 4 backbone levels from startLevel 0, got 3'],
    [{ inChannels: RESNET_CHANNELS, outChannels: 256, numOuts: 3, endLevel: 1 }, 'model.neck.numOuts: must equal the 2 levels from startLevel 0 to endLevel 1, got 3'],
    [{ inChannels: RESNET_CHANNELS, outChannels: 256, numOuts: 5, addExtraConvs: 'on_top' }, "model.neck.addExtraConvs: expected false, true, 'on_input', 'on_lateral' or 'on_output', got \"on_top\""],
    [{ inChannels: RESNET_CHANNELS, outChannels: 256, numOuts: 5, startLevel: 4 }, 'model.neck.startLevel: expected an integer from 0 to 3, got 4'],
    [{ inChannels: RESNET_CHANNELS, outChannels: 256, numOuts: 5, upsampleCfg: {} }, "model.neck: unknown option 'upsampleCfg'"],
  ];
  for (const [options, message] of cases) {
    const error = t.throws(() => NECKS.build({ type: 'FPN', ...options }, 'model.neck'), { instanceOf: ConfigError });
    t.true(error?.message.startsWith(message), `${error?.message} should start with ${message}`);
  }

  withNeck({ inChannels: [8, 16], outChannels: 8, numOuts: 2 }, (neck) => {
    const wrongChannels = [tf.zeros([1, 4, 4, 8]) as tf.Tensor4D, tf.zeros([1, 2, 2, 8]) as tf.Tensor4D];
    t.throws(() => neck.forward(wrongChannels), { message: 'model.neck: feature map 1 should be [N, H, W, 16], got [1, 2, 2, 8]' });
    t.throws(() => neck.forward(wrongChannels.slice(0, 1)), { message: 'model.neck: expected 2 feature maps (inChannels [8,16]), got 1' });
    tf.dispose(wrongChannels);
  });
});
