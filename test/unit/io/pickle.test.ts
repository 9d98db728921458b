import test from 'ava';

import { PickleCallable, dictAttributes, unpickle, type PickleValue, type UnpickleOptions } from '../../../src/io/pickle.ts';
import { CheckpointError } from '../../../src/utils/errors.ts';
import { PickleWriter } from './pickle_writer.ts';

const MARK = 0x28;
const EMPTY_DICT = 0x7d;
const EMPTY_LIST = 0x5d;
const EMPTY_TUPLE = 0x29;
const TUPLE = 0x74;
const TUPLE2 = 0x86;
const SETITEMS = 0x75;
const SETITEM = 0x73;
const APPENDS = 0x65;
const BINPUT = 0x71;
const BINGET = 0x68;
const REDUCE = 0x52;
const BUILD = 0x62;
const NONE = 0x4e;
const NEWTRUE = 0x88;
const NEWFALSE = 0x89;

/** Allows only 'collections.OrderedDict' and records which globals were asked for. */
function options(requested: string[] = []): UnpickleOptions {
  return {
    source: 'test.pkl',
    resolveGlobal: (module, name) => {
      requested.push(`${module}.${name}`);
      if (`${module}.${name}` === 'collections.OrderedDict') return new PickleCallable('collections.OrderedDict', () => new Map());
      throw new CheckpointError(`test.pkl: global '${module}.${name}' is not allowed`);
    },
  };
}

test('protocol 2 values and containers', (t) => {
  // {'ints': [7, 300, -5, 2**70], 'pair': ('a', None), 'flags': (True, False), 'x': 0.25, 'again': <memo of 'pair'>}
  const bytes = new PickleWriter()
    .proto(2)
    .raw(EMPTY_DICT, MARK)
    .unicode('ints')
    .raw(EMPTY_LIST, MARK)
    .int(7)
    .int(300)
    .int(-5)
    .long1([0, 0, 0, 0, 0, 0, 0, 0, 0x40])
    .raw(APPENDS)
    .unicode('pair')
    .unicode('a')
    .raw(NONE, TUPLE2, BINPUT, 1)
    .unicode('flags')
    .raw(MARK, NEWTRUE, NEWFALSE, TUPLE)
    .unicode('x')
    .float(0.25)
    .unicode('again')
    .raw(BINGET, 1, SETITEMS)
    .stop();
  const result = unpickle(bytes, options()) as Map<string, PickleValue>;
  t.deepEqual([...result.keys()], ['ints', 'pair', 'flags', 'x', 'again']);
  t.deepEqual(result.get('ints'), [7, 300, -5, 2n ** 70n]);
  t.deepEqual(result.get('pair'), ['a', null]);
  t.true(Object.isFrozen(result.get('pair')), 'tuples are frozen arrays');
  t.false(Object.isFrozen(result.get('ints')), 'lists are not');
  t.deepEqual(result.get('flags'), [true, false]);
  t.is(result.get('x'), 0.25);
  t.is(result.get('again'), result.get('pair'));
});

test('negative LONG1 and small ints decode', (t) => {
  const cases: Array<[number[], number | bigint]> = [
    [[], 0],
    [[0xff], -1],
    [[0x00, 0x80], -32768],
    [[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 2n ** 71n - 1n],
  ];
  for (const [bytes, expected] of cases) {
    t.is(unpickle(new PickleWriter().proto(2).long1(bytes).stop(), options()), expected, JSON.stringify(bytes));
  }
});

test('allowed global builds an OrderedDict with state', (t) => {
  // OrderedDict() filled by SETITEM, then BUILD sets its __dict__ (PyTorch's _metadata).
  const bytes = new PickleWriter()
    .proto(2)
    .global('collections', 'OrderedDict')
    .raw(EMPTY_TUPLE, REDUCE)
    .unicode('w')
    .int(1)
    .raw(SETITEM, EMPTY_DICT)
    .unicode('_metadata')
    .raw(EMPTY_DICT, SETITEM, BUILD)
    .stop();
  const result = unpickle(bytes, options()) as Map<PickleValue, PickleValue>;
  t.deepEqual([...result.entries()], [['w', 1]]);
  t.deepEqual(dictAttributes.get(result), new Map([['_metadata', new Map()]]));
});

test('forbidden global is rejected before any call', (t) => {
  const requested: string[] = [];
  let called = false;
  const guarded: UnpickleOptions = {
    ...options(requested),
    resolveGlobal: (module, name) => {
      requested.push(`${module}.${name}`);
      if (module === 'posix') return new PickleCallable('posix.system', () => ((called = true), null));
      throw new CheckpointError(`test.pkl: global '${module}.${name}' is not allowed`);
    },
  };
  // The pickle names builtins.eval with GLOBAL, then calls it with REDUCE.
  const evalPickle = new PickleWriter().proto(2).global('builtins', 'eval').unicode('1 + 1').raw(0x85, REDUCE).stop();
  t.throws(() => unpickle(evalPickle, guarded), { instanceOf: CheckpointError, message: "test.pkl: global 'builtins.eval' is not allowed" });

  // Protocol 4 names globals with STACK_GLOBAL from two strings on the stack.
  const stackGlobal = new PickleWriter().proto(4).raw(0x95, 0, 0, 0, 0, 0, 0, 0, 0).shortUnicode('os').raw(0x94).shortUnicode('system').raw(0x94, 0x93).stop();
  t.throws(() => unpickle(stackGlobal, guarded), { instanceOf: CheckpointError, message: "test.pkl: global 'os.system' is not allowed" });
  t.deepEqual(requested, ['builtins.eval', 'os.system']);
  t.false(called);
});

test('REDUCE only calls resolver callables', (t) => {
  // A string is not callable, even when a pickle tries to call it.
  const bytes = new PickleWriter().proto(2).unicode('os.system').raw(EMPTY_TUPLE, REDUCE).stop();
  t.throws(() => unpickle(bytes, options()), {
    instanceOf: CheckpointError,
    message: 'test.pkl: invalid pickle at byte 17: REDUCE on string "os.system", which is not callable',
  });
});

test('malformed pickles name the problem', (t) => {
  const cases: Array<[Uint8Array, string]> = [
    [new Uint8Array([0x80, 0x02, 0x4a, 0x01]), 'test.pkl: invalid pickle at byte 2: needs 4 more bytes but the pickle ends at byte 4 (truncated?)'],
    [new Uint8Array([0x80, 0x02, 0x4b, 0x01]), 'test.pkl: invalid pickle at byte 4: needs 1 more bytes but the pickle ends at byte 4 (truncated?)'],
    [new Uint8Array([0x80, 0x02, 0xff]), 'test.pkl: invalid pickle at byte 2: unknown opcode 0xff'],
    [new Uint8Array([0x80, 0x02, 0x49, 0x31, 0x0a, 0x2e]), 'test.pkl: invalid pickle at byte 2: opcode INT of the text protocol 0 is not supported'],
    [new Uint8Array([0x80, 0x02, 0x2e]), 'test.pkl: invalid pickle at byte 2: stack underflow'],
    [new Uint8Array([0x80, 0x02, 0x68, 0x05, 0x2e]), 'test.pkl: invalid pickle at byte 2: memo entry 5 is not defined'],
    [new Uint8Array([0x80, 0x06, 0x2e]), 'test.pkl: invalid pickle at byte 0: pickle protocol 6 is not supported (2 to 5 are)'],
    [new Uint8Array([0x80, 0x02, 0x4b, 0x01, 0x4b, 0x02, 0x2e]), 'test.pkl: invalid pickle at byte 6: STOP leaves 1 items on the stack'],
    [new Uint8Array([0x80, 0x02, 0x4b, 0x01, 0x51, 0x2e]), 'test.pkl: invalid pickle at byte 4: BINPERSID but this pickle allows no persistent ids'],
  ];
  for (const [bytes, message] of cases) {
    t.throws(() => unpickle(bytes, options()), { instanceOf: CheckpointError, message });
  }
});
