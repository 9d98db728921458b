import * as tf from '@tensorflow/tfjs-core';

import type { Module } from '../../../src/nn/module.ts';
import type { Backbone } from '../../../src/models/types.ts';

/** Runs `body` on `model` and disposes the model afterwards, even when `body` throws. */
export function withModel<M extends Module, T>(model: M, body: (model: M) => T): T {
  try {
    return body(model);
  } finally {
    model.dispose();
  }
}

/** Returns the names of the parameters that are not trainable, in namedParameters() order. */
export function frozenParameterNames(model: Module): string[] {
  return model
    .namedParameters()
    .filter(([, variable]) => !variable.trainable)
    .map(([name]) => name);
}

/**
 * Runs one forward and backward pass in training mode on seeded random images, with the mean
 * square of every output as the loss. Returns the gradient of each trainable parameter by name.
 */
export function trainingStepGradients(model: Backbone, imageSize = 32): Map<string, tf.Tensor> {
  model.train();
  const images = tf.randomNormal([2, imageSize, imageSize, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
  const trainable = model.trainableParameters();
  const loss = (): tf.Scalar => tf.tidy(() => tf.addN(model.forward(images).map((output) => tf.mean(tf.square(output)))) as tf.Scalar);
  const { value, grads } = tf.variableGrads(loss, trainable.map(([, variable]) => variable));
  value.dispose();
  images.dispose();

  const byName = new Map<string, tf.Tensor>();
  for (const [name, variable] of trainable) {
    const gradient = grads[variable.name];
    if (gradient !== undefined) byName.set(name, gradient);
  }
  return byName;
}

/** Largest absolute value of `tensor`. */
export function maxAbs(tensor: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tensor)).dataSync()[0]!);
}
