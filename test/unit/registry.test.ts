import test from 'ava';

import { Registry } from '../../src/registry/registry.ts';
import { RegistryError } from '../../src/utils/errors.ts';

function makeRegistry(): Registry<{ kind: string; depth: number }> {
  const registry = new Registry<{ kind: string; depth: number }>('BACKBONES');
  registry.register('ResNet', (o: { depth: number }) => ({ kind: 'ResNet', depth: o.depth }));
  registry.register('RLAResNet', (o: { depth: number }) => ({ kind: 'RLAResNet', depth: o.depth }), { aliases: ['RLA_ResNet'] });
  return registry;
}

test('build passes options without type', (t) => {
  const built = makeRegistry().build({ type: 'RLAResNet', depth: 101 });
  t.deepEqual(built, { kind: 'RLAResNet', depth: 101 });
});

test('alias resolves to canonical factory', (t) => {
  t.is(makeRegistry().build({ type: 'RLA_ResNet', depth: 50 }).kind, 'RLAResNet');
});

test('unknown type names registry, value, closest and list', (t) => {
  const error = t.throws(() => makeRegistry().build({ type: 'RLAResnet', depth: 50 }, 'model.backbone'), {
    instanceOf: RegistryError,
  });
  t.is(
    error?.message,
    "model.backbone.type: 'RLAResnet' is not registered in BACKBONES. Did you mean 'RLAResNet'? Registered: RLAResNet, ResNet",
  );
});

test('duplicate registration is rejected', (t) => {
  const registry = makeRegistry();
  t.throws(() => registry.register('ResNet', () => ({ kind: 'x', depth: 0 })), { message: /already registered/ });
});
