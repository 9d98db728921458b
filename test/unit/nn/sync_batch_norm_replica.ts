/**
 * One replica of the SyncBN thread tests. It joins the other replicas through the shared-memory
 * group and runs the NormPair layers named in `order` on its shard in training mode, each on
 * the previous layer's output. Then it posts the output, the gradients of
 * sum(output * upstream) and the running statistics.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { parentPort, workerData } from 'node:worker_threads';

import '../../../src/backends/register_gradients.ts';

import { SharedMemorySyncGroup, type SyncBatchNormSetup } from '../../../src/engine/parallel/sync_batch_norm_group.ts';
import { setBatchNormSyncGroup } from '../../../src/nn/sync_batch_norm.ts';
import { NormPair } from './sync_batch_norm_model.ts';

export interface ReplicaInput {
  index: number;
  workers: number;
  setup: SyncBatchNormSetup;
  shape: [number, number, number, number];
  x: Float32Array;
  upstream: Float32Array;
  weight: Float32Array;
  bias: Float32Array;
  order: Array<'first' | 'second'>;
}

export type ReplicaOutput =
  | { ok: true; output: Float32Array; dx: Float32Array; grads: Record<string, Float32Array>; buffers: Record<string, Float32Array> }
  | { ok: false; message: string };

function run(input: ReplicaInput): ReplicaOutput {
  const model = new NormPair(input.shape[3], input.weight, input.bias);
  const group = new SharedMemorySyncGroup(model, input.index, input.workers, input.setup);
  group.beginStep(input.workers);
  setBatchNormSyncGroup(group);

  const initial = tf.tensor4d(input.x, input.shape);
  const x = tf.variable(initial);
  initial.dispose();
  const upstream = tf.tensor4d(input.upstream, input.shape);
  const parameters = model.namedParameters();
  let output: tf.Tensor | undefined;
  const { value, grads } = tf.variableGrads(() => {
    output = tf.keep(input.order.reduce((current, name) => model[name].forward(current), x as tf.Tensor4D));
    return tf.sum(tf.mul(output, upstream)) as tf.Scalar;
  }, [x, ...parameters.map(([, variable]) => variable)]);

  const read = (tensor: tf.Tensor) => Float32Array.from(tensor.dataSync());
  const result: ReplicaOutput = {
    ok: true,
    output: read(output!),
    dx: read(grads[x.name]!),
    grads: Object.fromEntries(parameters.filter(([, variable]) => grads[variable.name] !== undefined).map(([name, variable]) => [name, read(grads[variable.name]!)])),
    buffers: Object.fromEntries(model.namedBuffers().map(([name, variable]) => [name, read(variable)])),
  };
  tf.dispose([value, output!, x, upstream, ...Object.values(grads)]);
  return result;
}

await tf.setBackend('cpu');
const port = parentPort!;
try {
  port.postMessage(run(workerData as ReplicaInput));
} catch (error) {
  port.postMessage({ ok: false, message: (error as Error).message } satisfies ReplicaOutput);
}
