import test from 'ava';

import { ANCHOR_GENERATORS } from '../../../src/registry/index.ts';
import { AnchorGenerator } from '../../../src/models/task_modules/anchor_generator.ts';
import { describeMismatch, firstMismatch, loadOpsFixture } from './fixture.ts';

interface LevelFixture {
  stride: number;
  base_size: number;
  base_anchors: number[][];
  grids: Array<{ featmap_size: [number, number]; anchors: number[][] }>;
}

interface AnchorsFixture {
  featmap_sizes: Array<[number, number]>;
  configs: {
    rpn: { strides: number[]; ratios: number[]; scales: number[]; levels: LevelFixture[] };
    retinanet: { strides: number[]; ratios: number[]; octave_base_scale: number; scales_per_octave: number; levels: LevelFixture[] };
  };
}

const fixture = loadOpsFixture<AnchorsFixture>('anchors.json');
const { rpn, retinanet } = fixture.configs;

const generators = {
  rpn: new AnchorGenerator({ strides: rpn.strides, ratios: rpn.ratios, scales: rpn.scales }),
  retinanet: new AnchorGenerator({
    strides: retinanet.strides,
    ratios: retinanet.ratios,
    octaveBaseScale: retinanet.octave_base_scale,
    scalesPerOctave: retinanet.scales_per_octave,
  }),
};

for (const name of ['rpn', 'retinanet'] as const) {
  test(`${name} base anchors match fixture`, (t) => {
    const levels = fixture.configs[name].levels;
    t.deepEqual(generators[name].numBaseAnchors, levels.map((level) => level.base_anchors.length));
    levels.forEach((level, i) => {
      const expected = level.base_anchors.flat();
      const actual = generators[name].baseAnchors[i]!;
      const index = firstMismatch(actual, expected, 1e-12, 1e-12);
      t.is(index, -1, `level ${i}: ${describeMismatch(actual, expected, index)}`);
    });
  });

  test(`${name} grid anchors match fixture`, (t) => {
    const levels = fixture.configs[name].levels;
    for (const gridIndex of [0, 1]) {
      const sizes = levels.map((level) => level.grids[gridIndex]!.featmap_size);
      const grids = generators[name].gridAnchors(sizes);
      levels.forEach((level, i) => {
        const expected = level.grids[gridIndex]!.anchors.flat();
        const index = firstMismatch(grids[i]!, expected, 1e-5, 1e-5);
        t.is(index, -1, `level ${i} size ${sizes[i]}: ${describeMismatch(grids[i]!, expected, index)}`);
      });
    }
  });
}

test('first retinanet anchor centred at origin', (t) => {
  const [level0] = generators.retinanet.gridAnchors([[2, 3], [1, 1], [1, 1], [1, 1], [1, 1]]);
  // Anchor 0: ratio 0.5, scale 4 at stride 8: w = 32 * sqrt(2), h = 32 / sqrt(2), centre (0, 0).
  t.true(Math.abs(level0![0]! + 16 * Math.SQRT2) < 1e-5);
  t.true(Math.abs(level0![1]! + 8 * Math.SQRT2) < 1e-5);
  t.is(level0![0]! + level0![2]!, 0);
  // Cell (y=1, x=2), anchor 4 (ratio 1, scale 4 * 2^(1/3)): centre (16, 8).
  const row = (1 * 3 + 2) * 9 + 4;
  t.true(Math.abs((level0![4 * row]! + level0![4 * row + 2]!) / 2 - 16) < 1e-5);
  t.true(Math.abs((level0![4 * row + 1]! + level0![4 * row + 3]!) / 2 - 8) < 1e-5);
});

test('gridAnchors caches by size', (t) => {
  const sizes: Array<[number, number]> = [[4, 4], [2, 2], [1, 1], [1, 1], [1, 1]];
  const first = generators.retinanet.gridAnchors(sizes);
  const second = generators.retinanet.gridAnchors(sizes);
  t.is(first[0], second[0]);
  const other = generators.retinanet.gridAnchors([[4, 5], [2, 2], [1, 1], [1, 1], [1, 1]]);
  t.not(other[0], first[0]);
  t.is(other[0]!.length, 4 * 5 * 9 * 4);
});

test('scaleMajor false puts scale outer', (t) => {
  const generator = new AnchorGenerator({ strides: [16], ratios: [0.5, 1, 2], scales: [1, 2], scaleMajor: false });
  const widths = [];
  const base = generator.baseAnchors[0]!;
  for (let a = 0; a < 6; a++) widths.push(base[4 * a + 2]! - base[4 * a]!);
  const expected = [1, 2].flatMap((scale) => [0.5, 1, 2].map((ratio) => (16 * scale) / Math.sqrt(ratio)));
  t.is(firstMismatch(widths, expected, 1e-12, 0), -1);
});

test('centerOffset and rectangular strides', (t) => {
  const generator = new AnchorGenerator({ strides: [[8, 4]], ratios: [1], scales: [1], centerOffset: 0.5 });
  // Base size is the smaller stride (4); the centre is at 0.5 * 4 = 2.
  t.deepEqual([...generator.baseAnchors[0]!], [0, 0, 4, 4]);
  const [grid] = generator.gridAnchors([[2, 2]]);
  t.deepEqual([...grid!], [0, 0, 4, 4, 8, 0, 12, 4, 0, 4, 4, 8, 8, 4, 12, 8]);
});

test('validFlags mark cells inside pad shape', (t) => {
  const generator = new AnchorGenerator({ strides: [8], ratios: [1, 2], scales: [1] });
  // Pad shape 17 x 9: ceil(17 / 8) = 3 valid rows of 4, ceil(9 / 8) = 2 valid columns of 3.
  const [flags] = generator.validFlags([[4, 3]], [17, 9]);
  const cells = [];
  for (let cell = 0; cell < 12; cell++) cells.push(flags![2 * cell]! + flags![2 * cell + 1]!);
  t.deepEqual(cells, [2, 2, 0, 2, 2, 0, 2, 2, 0, 0, 0, 0]);
});

test('empty feature map gives no anchors', (t) => {
  const generator = new AnchorGenerator({ strides: [8], ratios: [1], scales: [1] });
  t.is(generator.gridAnchors([[0, 5]])[0]!.length, 0);
});

test('option errors name the problem', (t) => {
  t.regex(
    t.throws(() => new AnchorGenerator({ strides: [8], ratios: [1], scales: [1], octaveBaseScale: 4, scalesPerOctave: 3 }))!.message,
    /either 'scales' or 'octaveBaseScale'/,
  );
  t.regex(t.throws(() => new AnchorGenerator({ strides: [8], ratios: [1] }))!.message, /missing scales/);
  t.regex(t.throws(() => new AnchorGenerator({ strides: [8], ratios: [1], scales: [1], stride: 3 } as never))!.message, /unknown option 'stride'/);
  t.regex(t.throws(() => new AnchorGenerator({ strides: [8, 16], ratios: [1], scales: [1], baseSizes: [8] }))!.message, /1 baseSizes for 2 strides/);
  t.regex(t.throws(() => generators.rpn.gridAnchors([[1, 1]]))!.message, /got 1 feature-map sizes for 5 levels/);
});

test('registry builds AnchorGenerator', (t) => {
  const built = ANCHOR_GENERATORS.build({ type: 'AnchorGenerator', strides: [8], ratios: [1], scales: [2] });
  t.true(built instanceof AnchorGenerator);
});
