import * as tf from '@tensorflow/tfjs-core';

import { checkOptionKeys } from '../config/config.ts';
import { ConfigError } from '../utils/errors.ts';

/**
 * An optimizer updates parameters from gradients. Its state is a set of named tensors (for
 * example `momentum_buffer.<parameter>`) plus a JSON-serialisable record (step counts), both
 * saved in checkpoints so that a resumed run continues exactly.
 */
export interface Optimizer {
  step(parameters: ReadonlyMap<string, tf.Variable>, grads: ReadonlyMap<string, tf.Tensor>, lr: number): void;
  stateTensors(): Map<string, tf.Variable>;
  stateRecord(): Record<string, number>;
  /** Restores the state (copies the tensors' data; the caller keeps ownership of `tensors`). */
  loadState(tensors: ReadonlyMap<string, tf.Tensor>, record: Record<string, number>): void;
  disposeState(): void;
}

export interface SGDOptions {
  /** Base learning rate before warm-up, decay and batch-size scaling. */
  lr: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

const MOMENTUM = 'momentum_buffer.';
const EXP_AVG = 'exp_avg.';
const EXP_AVG_SQ = 'exp_avg_sq.';

/**
 * Stochastic gradient descent with momentum and L2 weight decay, with PyTorch's update rule
 * (torch.optim.SGD, dampening 0):
 *   g = grad + weightDecay * p;  v = momentum * v + g;  p = p - lr * v
 * (Nesterov: p = p - lr * (g + momentum * v)). Momentum buffers are created on the first step
 * of each parameter, as PyTorch does, and are part of the checkpointed state.
 */
export class SGD implements Optimizer {
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

  /** Momentum buffers as `momentum_buffer.<parameter>`, PyTorch's state name. */
  stateTensors(): Map<string, tf.Variable> {
    return new Map([...this.buffers].map(([name, buffer]) => [`${MOMENTUM}${name}`, buffer]));
  }

  stateRecord(): Record<string, number> {
    return {};
  }

  loadState(tensors: ReadonlyMap<string, tf.Tensor>): void {
    this.disposeState();
    for (const [key, tensor] of tensors) {
      if (!key.startsWith(MOMENTUM)) throw new Error(`SGD.loadState: unexpected state tensor '${key}'`);
      // A variable shares the tensor's data (reference counted), so the caller may dispose `tensors`.
      this.buffers.set(key.slice(MOMENTUM.length), tf.variable(tensor, false));
    }
  }

  disposeState(): void {
    for (const buffer of this.buffers.values()) buffer.dispose();
    this.buffers.clear();
  }
}

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  /** Decoupled weight decay (multiplied by the lr), as torch.optim.AdamW; default 0.01. */
  weightDecay?: number;
}

/**
 * AdamW with PyTorch's update rule (torch.optim.AdamW, amsgrad off), per parameter with its own
 * step count t:
 *   p = p * (1 - lr * weightDecay)
 *   m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2
 *   p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 */
export class AdamW implements Optimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly moments = new Map<string, { m: tf.Variable; v: tf.Variable }>();
  private readonly steps = new Map<string, number>();

  constructor(options: AdamWOptions) {
    [this.beta1, this.beta2] = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    for (const [name, beta] of [['betas[0]', this.beta1], ['betas[1]', this.beta2]] as const) {
      if (!(beta >= 0 && beta < 1)) throw new ConfigError(`optimizer.${name}: expected a value in [0, 1), got ${beta}`);
    }
    if (!(this.eps > 0)) throw new ConfigError(`optimizer.eps: expected > 0, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new ConfigError(`optimizer.weightDecay: expected >= 0, got ${this.weightDecay}`);
  }

  step(parameters: ReadonlyMap<string, tf.Variable>, grads: ReadonlyMap<string, tf.Tensor>, lr: number): void {
    for (const [name, grad] of grads) {
      const parameter = parameters.get(name);
      if (parameter === undefined) throw new Error(`AdamW.step: gradient for unknown parameter '${name}'`);
      let moment = this.moments.get(name);
      if (moment === undefined) {
        moment = { m: tf.variable(tf.zerosLike(grad), false), v: tf.variable(tf.zerosLike(grad), false) };
        this.moments.set(name, moment);
      }
      const t = (this.steps.get(name) ?? 0) + 1;
      this.steps.set(name, t);
      const { m, v } = moment;
      tf.tidy(() => {
        m.assign(tf.add(tf.mul(m, this.beta1), tf.mul(grad, 1 - this.beta1)));
        v.assign(tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(grad), 1 - this.beta2)));
        const stepSize = lr / (1 - this.beta1 ** t);
        const denominator = tf.add(tf.div(tf.sqrt(v), Math.sqrt(1 - this.beta2 ** t)), this.eps);
        const decayed = this.weightDecay === 0 ? parameter : tf.mul(parameter, 1 - lr * this.weightDecay);
        parameter.assign(tf.sub(decayed, tf.mul(tf.div(m, denominator), stepSize)));
      });
    }
  }

  /** First and second moments as `exp_avg.<parameter>` and `exp_avg_sq.<parameter>` (PyTorch's names). */
  stateTensors(): Map<string, tf.Variable> {
    const tensors = new Map<string, tf.Variable>();
    for (const [name, { m, v }] of this.moments) {
      tensors.set(`${EXP_AVG}${name}`, m);
      tensors.set(`${EXP_AVG_SQ}${name}`, v);
    }
    return tensors;
  }

  /** Step count of each parameter as `step.<parameter>`. */
  stateRecord(): Record<string, number> {
    return Object.fromEntries([...this.steps].map(([name, t]) => [`step.${name}`, t]));
  }

  loadState(tensors: ReadonlyMap<string, tf.Tensor>, record: Record<string, number>): void {
    this.disposeState();
    for (const [key, t] of Object.entries(record)) {
      if (!key.startsWith('step.')) throw new Error(`AdamW.loadState: unexpected state entry '${key}'`);
      const name = key.slice('step.'.length);
      const m = tensors.get(`${EXP_AVG}${name}`);
      const v = tensors.get(`${EXP_AVG_SQ}${name}`);
      if (m === undefined || v === undefined) throw new Error(`AdamW.loadState: moments of '${name}' are missing`);
      this.moments.set(name, { m: tf.variable(m, false), v: tf.variable(v, false) });
      this.steps.set(name, t);
    }
  }

  disposeState(): void {
    for (const { m, v } of this.moments.values()) {
      m.dispose();
      v.dispose();
    }
    this.moments.clear();
    this.steps.clear();
  }
}

/** Builds the optimizer of `config.optimizer`. */
export function buildOptimizer(config: { type: string } & Record<string, unknown>): Optimizer {
  const { type, ...options } = config;
  if (type === 'SGD') {
    checkOptionKeys('optimizer', options, ['lr', 'momentum', 'weightDecay', 'nesterov']);
    return new SGD(options as unknown as SGDOptions);
  }
  if (type === 'AdamW') {
    checkOptionKeys('optimizer', options, ['lr', 'betas', 'eps', 'weightDecay']);
    return new AdamW(options as unknown as AdamWOptions);
  }
  throw new ConfigError(`optimizer.type: '${type}' is not supported (supported: SGD, AdamW)`);
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
