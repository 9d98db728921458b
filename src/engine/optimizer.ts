import * as tf from '@tensorflow/tfjs-core';

import { ConfigError } from '../utils/errors.ts';

export interface SGDOptions {
  /** Base learning rate before warm-up, decay and batch-size scaling. */
  lr: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/**
 * Stochastic gradient descent with momentum and L2 weight decay, with PyTorch's update rule
 * (torch.optim.SGD, dampening 0):
 *   g = grad + weightDecay * p;  v = momentum * v + g;  p = p - lr * v
 * (Nesterov: p = p - lr * (g + momentum * v)). Momentum buffers are created on the first step
 * of each parameter, as PyTorch does, and are part of the checkpointed state.
 */
export class SGD {
  readonly momentum: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  private readonly buffers = new Map<string, tf.Variable>();

  constructor(options: SGDOptions) {
    this.momentum = options.momentum ?? 0;
    this.weightDecay = options.weightDecay ?? 0;
    this.nesterov = options.nesterov ?? false;
    if (!(this.momentum >= 0)) throw new ConfigError(`optimizer.momentum: expected >= 0, got ${this.momentum}`);
    if (!(this.weightDecay >= 0)) throw new ConfigError(`optimizer.weightDecay: expected >= 0, got ${this.weightDecay}`);
    if (this.nesterov && this.momentum === 0) throw new ConfigError('optimizer.nesterov needs momentum > 0');
  }

  /** Updates each named parameter from its gradient. `grads` are not disposed. */
  step(parameters: ReadonlyMap<string, tf.Variable>, grads: ReadonlyMap<string, tf.Tensor>, lr: number): void {
    for (const [name, grad] of grads) {
      const parameter = parameters.get(name);
      if (parameter === undefined) throw new Error(`SGD.step: gradient for unknown parameter '${name}'`);
      tf.tidy(() => {
        let g: tf.Tensor = grad;
        if (this.weightDecay !== 0) g = tf.add(g, tf.mul(parameter, this.weightDecay));
        let update = g;
        if (this.momentum !== 0) {
          const buffer = this.buffers.get(name);
          if (buffer === undefined) {
            // First step: the buffer starts as the gradient itself (PyTorch's behaviour).
            this.buffers.set(name, tf.variable(tf.clone(g), false));
            update = g;
          } else {
            buffer.assign(tf.add(tf.mul(buffer, this.momentum), g));
            update = buffer;
          }
          if (this.nesterov) update = tf.add(g, tf.mul(update, this.momentum));
        }
        parameter.assign(tf.sub(parameter, tf.mul(update, lr)));
      });
    }
  }

  /** Momentum buffers by parameter name, for checkpoints. */
  state(): Map<string, tf.Variable> {
    return new Map(this.buffers);
  }

  /** Restores momentum buffers (copies the tensors; the caller keeps ownership of `state`). */
  loadState(state: ReadonlyMap<string, tf.Tensor>): void {
    this.disposeState();
    // A variable shares the tensor's data (reference counted), so the caller may dispose `state`.
    for (const [name, tensor] of state) this.buffers.set(name, tf.variable(tensor, false));
  }

  disposeState(): void {
    for (const buffer of this.buffers.values()) buffer.dispose();
    this.buffers.clear();
  }
}

/**
 * Scales gradients so that their global L2 norm is at most `maxNorm`, as
 * torch.nn.utils.clip_grad_norm_ (coefficient maxNorm / (norm + 1e-6), applied only when below 1).
 * Replaces the entries of `grads` in place (disposing the old tensors) and returns the norm
 * before clipping.
 */
export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): number {
  const totalNorm = tf.tidy(() => {
    const squares = [...grads.values()].map((g) => tf.sum(tf.square(g)));
    return tf.sqrt(tf.addN(squares));
  });
  const norm = totalNorm.dataSync()[0]!;
  totalNorm.dispose();
  const coefficient = maxNorm / (norm + 1e-6);
  if (coefficient < 1) {
    for (const [name, g] of grads) {
      grads.set(name, tf.mul(g, coefficient));
      g.dispose();
    }
  }
  return norm;
}
