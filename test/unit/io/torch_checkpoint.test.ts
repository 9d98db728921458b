import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';

import { dictAttributes, type PickleValue } from '../../../src/io/pickle.ts';
import { readSafetensors, toFloat32Array } from '../../../src/io/safetensors.ts';
import { decodeTorchCheckpoint } from '../../../src/io/torch_checkpoint.ts';
import { decodeWeightFile, readWeightFile } from '../../../src/io/weight_file.ts';
import { CheckpointError } from '../../../src/utils/errors.ts';
import { PickleWriter } from './pickle_writer.ts';
import { buildZip } from './zip_builder.ts';

const RLA = new URL('../../fixtures/rla/', import.meta.url).pathname;
const PYTORCH = new URL('../../fixtures/pytorch/', import.meta.url).pathname;

function rawBytes(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

test('official RLA checkpoint structure', async (t) => {
  const file = await readWeightFile(`${RLA}backbone.pth.tar`);
  t.is(file.format, 'pytorch');
  t.is(file.layout, 'pytorch');
  t.deepEqual(file.topLevelKeys, ['state_dict', 'epoch']);
  t.is(file.stateDictKey, 'state_dict');
  t.is(file.epoch, 3);
  t.is(file.tensors.size, 130);
  t.true([...file.tensors.keys()].every((key) => key.startsWith('module.')));

  const conv1 = file.tensors.get('module.conv1.weight')!;
  t.is(conv1.dtype, 'F32');
  t.deepEqual(conv1.shape, [64, 3, 7, 7]);

  // The 21 BatchNorm step counters are int64 scalars set to 1000 + their index, in state-dict order.
  const counters = [...file.tensors].filter(([key]) => key.endsWith('.num_batches_tracked'));
  t.is(counters.length, 21);
  t.deepEqual(
    counters.map(([, tensor]) => [tensor.dtype, tensor.shape.length, Number((tensor.data as BigInt64Array)[0])]),
    counters.map((_, i) => ['I64', 0, 1000 + i]),
  );
  t.is(counters[0]![0], 'module.bn1.num_batches_tracked');
  t.is(counters[20]![0], 'module.stage_bns.3.0.num_batches_tracked');
});

test('state dict metadata survives BUILD', async (t) => {
  const { root } = decodeTorchCheckpoint(readFileSync(`${RLA}backbone.pth.tar`), 'backbone.pth.tar');
  const stateDict = (root as Map<string, PickleValue>).get('state_dict') as Map<PickleValue, PickleValue>;
  const attributes = dictAttributes.get(stateDict) as Map<string, PickleValue>;
  const metadata = attributes.get('_metadata') as Map<string, PickleValue>;
  // One version record per module, keyed by its dotted name ('' is the DataParallel wrapper).
  t.true(metadata.has(''));
  t.deepEqual(metadata.get('module.bn1'), new Map([['version', 2]]));
});

test('pth.tar and safetensors give identical tensors', async (t) => {
  const fromTorch = await readWeightFile(`${RLA}backbone.pth.tar`);
  const fromSafetensors = await readSafetensors(`${RLA}backbone.safetensors`);
  t.is(fromSafetensors.tensors.size, 109);
  for (const [key, expected] of fromSafetensors.tensors) {
    const actual = fromTorch.tensors.get(`module.${key}`);
    t.truthy(actual, key);
    t.is(actual!.dtype, expected.dtype, key);
    t.deepEqual(actual!.shape, expected.shape, key);
    t.true(Buffer.from(rawBytes(actual!.data)).equals(Buffer.from(rawBytes(expected.data))), `${key} bytes differ`);
  }
  const extra = [...fromTorch.tensors.keys()].filter((key) => !fromSafetensors.tensors.has(key.slice('module.'.length)));
  t.true(extra.every((key) => key.endsWith('.num_batches_tracked')), extra.join(', '));
});

test('storage layouts decode like PyTorch', (t) => {
  const bytes = readFileSync(`${PYTORCH}layouts.pth`);
  const expected = JSON.parse(readFileSync(`${PYTORCH}layouts.json`, 'utf8')) as { values: Record<string, number[]>; shapes: Record<string, number[]> };
  const file = decodeWeightFile(bytes, 'layouts.pth');
  t.deepEqual([...file.tensors.keys()], Object.keys(expected.values));
  for (const [name, tensor] of file.tensors) {
    t.deepEqual(tensor.shape, expected.shapes[name], name);
    const values = [...toFloat32Array(tensor)];
    t.deepEqual(values, expected.values[name]!.map((value) => Math.fround(value)), name);
  }
  t.deepEqual(
    Object.fromEntries([...file.tensors].map(([name, tensor]) => [name, tensor.dtype])),
    { transposed: 'F32', row_slice: 'F32', column_slice: 'F32', shared: 'F32', half: 'F16', bfloat16: 'BF16', int64: 'I64', double: 'F64', parameter: 'F32', scalar: 'F32' },
  );
  // Contiguous tensors are views of the file buffer, strided ones are copies.
  t.is(file.tensors.get('shared')!.data.buffer, bytes.buffer);
  t.is(file.tensors.get('row_slice')!.data.buffer, bytes.buffer);
  t.not(file.tensors.get('transposed')!.data.buffer, bytes.buffer);
});

test('forbidden global in a checkpoint is rejected', async (t) => {
  const marker = '/tmp/rladet-pickle-was-run';
  t.false(existsSync(marker));
  const path = `${PYTORCH}forbidden_global.pth`;
  const error = await t.throwsAsync(readWeightFile(path), { instanceOf: CheckpointError });
  t.true(error!.message.startsWith(`${path}: data.pkl refers to the Python global 'posix.system', which is not allowed.`), error!.message);
  t.true(error!.message.includes('and nothing from the file was run.'), error!.message);
  t.true(error!.message.endsWith(`torch.save(torch.load('${path}', map_location='cpu', weights_only=False)['state_dict'], 'weights.pth')`), error!.message);
  t.false(existsSync(marker));
});

test('forbidden STACK_GLOBAL in a zip is rejected', (t) => {
  // Protocol 4: STACK_GLOBAL('builtins', 'exec') applied to a string.
  const pickle = new PickleWriter().proto(4).shortUnicode('builtins').shortUnicode('exec').raw(0x93).shortUnicode('print(1)').raw(0x85, 0x52).stop();
  const bytes = buildZip([{ name: 'evil/data.pkl', data: pickle }, { name: 'evil/version', data: '3\n' }]);
  t.throws(() => decodeWeightFile(bytes, 'evil.pth'), {
    instanceOf: CheckpointError,
    message: /^evil\.pth: data\.pkl refers to the Python global 'builtins\.exec', which is not allowed\./,
  });
});

test('legacy format error says how to re-save', async (t) => {
  const path = `${PYTORCH}legacy_format.pth`;
  await t.throwsAsync(readWeightFile(path), {
    instanceOf: CheckpointError,
    message:
      `${path} was written by torch.save in PyTorch's legacy format (before PyTorch 1.6 or with _use_new_zipfile_serialization=False), ` +
      `which rladet does not read. Re-save it in the zip format with PyTorch 1.6 or later: ` +
      `python -c "import torch; torch.save(torch.load('${path}', map_location='cpu'), 'resaved.pth')"`,
  });
});

test('truncated checkpoint is rejected', (t) => {
  const bytes = readFileSync(`${RLA}backbone.pth.tar`);
  for (const length of [bytes.length - 1, bytes.length - 22, Math.floor(bytes.length / 2)]) {
    t.throws(() => decodeWeightFile(bytes.subarray(0, length), 'cut.pth.tar'), {
      instanceOf: CheckpointError,
      message: 'cut.pth.tar: invalid zip archive: end of central directory record not found (the file is truncated or is not a zip archive)',
    });
  }
});

test('files that are not checkpoints are named', (t) => {
  const notCheckpoint = (start: string) =>
    `x is not a checkpoint: expected a PyTorch zip checkpoint (.pth, .pth.tar, .pt), a safetensors file or an rladet checkpoint, but the file starts with bytes ${start}`;
  const cases: Array<[Uint8Array, string]> = [
    [new TextEncoder().encode('{"images": []}'), notCheckpoint('7b 22 69 6d 61 67 65 73')],
    [new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]), notCheckpoint('89 50 4e 47 0d 0a 1a 0a')],
    [new Uint8Array(0), notCheckpoint('(none: the file is empty)')],
    [buildZip([{ name: 'photos/a.jpg', data: 'jpeg' }]), 'x is a zip archive with no top-level data.pkl, so not a torch.save checkpoint (first entries: photos/a.jpg)'],
    [
      buildZip([
        { name: 'model/data.pkl', data: new PickleWriter().proto(2).raw(0x4e).stop() },
        { name: 'model/constants.pkl', data: new PickleWriter().proto(2).raw(0x29).stop() },
      ]),
      "x is a TorchScript archive (torch.jit.save), not a checkpoint; save the model's state_dict() with torch.save instead",
    ],
    [buildZip([{ name: 'c/data.pkl', data: new PickleWriter().proto(2).int(3).stop() }]), "x contains a number 3, expected a state dict (a dict of tensors) or a dict with a 'state_dict' entry"],
  ];
  for (const [bytes, message] of cases) t.throws(() => decodeWeightFile(bytes, 'x'), { instanceOf: CheckpointError, message });
});

test('missing storage entry is named', (t) => {
  // {'w': _rebuild_tensor_v2(persistent ('storage', FloatStorage, '0', 'cpu', 2), 0, (2,), (1,), False, OrderedDict())}
  const pickle = new PickleWriter()
    .proto(2)
    .raw(0x7d)
    .unicode('w')
    .global('torch._utils', '_rebuild_tensor_v2')
    .raw(0x28, 0x28)
    .unicode('storage')
    .global('torch', 'FloatStorage')
    .unicode('0')
    .unicode('cpu')
    .int(2)
    .raw(0x74, 0x51)
    .int(0)
    .int(2)
    .raw(0x85)
    .int(1)
    .raw(0x85, 0x89)
    .global('collections', 'OrderedDict')
    .raw(0x29, 0x52, 0x74, 0x52, 0x73)
    .stop();
  const bytes = buildZip([{ name: 'm/data.pkl', data: pickle }]);
  t.throws(() => decodeWeightFile(bytes, 'm.pth'), { instanceOf: CheckpointError, message: "m.pth: storage '0' has no zip entry m/data/0" });

  const withStorage = buildZip([
    { name: 'm/data.pkl', data: pickle },
    { name: 'm/data/0', data: new Uint8Array(new Float32Array([1.5, -2]).buffer) },
  ]);
  const tensor = decodeWeightFile(withStorage, 'm.pth').tensors.get('w')!;
  t.deepEqual([...toFloat32Array(tensor)], [1.5, -2]);
});

test('missing file names its path', async (t) => {
  const error = await t.throwsAsync(readWeightFile('missing.pth'), { instanceOf: CheckpointError });
  t.true(error!.message.startsWith('checkpoint missing.pth cannot be read: ENOENT'), error!.message);
});
