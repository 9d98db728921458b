import * as tf from '@tensorflow/tfjs-core';

/**
 * Base class of every layer and model, in the spirit of `torch.nn.Module`: it owns named
 * parameters (trainable `tf.Variable`s), buffers (saved state that the optimizer never
 * touches, such as batch-norm running statistics) and child modules. Names join with dots
 * (`stages.0.0.conv1.weight`), so a state dict reads like a PyTorch one.
 */
export abstract class Module {
  /** Training mode: batch statistics in batch norm, losses in heads. */
  training = true;

  private readonly parameterMap = new Map<string, tf.Variable>();
  private readonly bufferMap = new Map<string, tf.Variable>();
  private readonly childMap = new Map<string, Module>();

  /** Registers a trainable parameter; the module owns `value` from now on. */
  protected addParameter(name: string, value: tf.Tensor): tf.Variable {
    this.assertFreeName(name);
    const variable = tf.variable(value, true);
    value.dispose();
    this.parameterMap.set(name, variable);
    return variable;
  }

  /** Registers a buffer: state saved with the model but not trained by the optimizer. */
  protected addBuffer(name: string, value: tf.Tensor): tf.Variable {
    this.assertFreeName(name);
    const variable = tf.variable(value, false);
    value.dispose();
    this.bufferMap.set(name, variable);
    return variable;
  }

  protected addModule<M extends Module>(name: string, module: M): M {
    this.assertFreeName(name);
    this.childMap.set(name, module);
    return module;
  }

  private assertFreeName(name: string): void {
    if (this.parameterMap.has(name) || this.bufferMap.has(name) || this.childMap.has(name)) {
      throw new Error(`${this.constructor.name}: name '${name}' is already used by a parameter, buffer or child`);
    }
  }

  /** Direct children, in registration order. */
  children(): Array<[string, Module]> {
    return [...this.childMap.entries()];
  }

  /** This module and every descendant, with dotted names ('' for this module). */
  namedModules(prefix = ''): Array<[string, Module]> {
    const result: Array<[string, Module]> = [[prefix, this]];
    for (const [name, child] of this.childMap) {
      result.push(...child.namedModules(prefix === '' ? name : `${prefix}.${name}`));
    }
    return result;
  }

  /** All parameters (trainable or frozen), with dotted names, in registration order. */
  namedParameters(prefix = ''): Array<[string, tf.Variable]> {
    const result: Array<[string, tf.Variable]> = [];
    for (const [name, variable] of this.parameterMap) result.push([joinName(prefix, name), variable]);
    for (const [name, child] of this.childMap) result.push(...child.namedParameters(joinName(prefix, name)));
    return result;
  }

  namedBuffers(prefix = ''): Array<[string, tf.Variable]> {
    const result: Array<[string, tf.Variable]> = [];
    for (const [name, variable] of this.bufferMap) result.push([joinName(prefix, name), variable]);
    for (const [name, child] of this.childMap) result.push(...child.namedBuffers(joinName(prefix, name)));
    return result;
  }

  /** Parameters the optimizer updates: those whose `trainable` flag is set. */
  trainableParameters(): Array<[string, tf.Variable]> {
    return this.namedParameters().filter(([, variable]) => variable.trainable);
  }

  /** Parameters and buffers by name: what a checkpoint stores. */
  stateDict(): Map<string, tf.Variable> {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  /** Number of parameter elements (trainable and frozen), as PyTorch counts `parameters()`. */
  countParameters(): number {
    return this.namedParameters().reduce((sum, [, variable]) => sum + variable.size, 0);
  }

  /**
   * Sets training mode on this module and its descendants. Subclasses that keep parts in
   * inference mode (frozen stages, `normEval`) override this and call `super.train` first.
   */
  train(mode = true): this {
    this.training = mode;
    for (const child of this.childMap.values()) child.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Stops the optimizer from updating every parameter of this module and its children. */
  freeze(): void {
    for (const [, variable] of this.namedParameters()) variable.trainable = false;
  }

  /** Frees every parameter and buffer. The module cannot be used afterwards. */
  dispose(): void {
    for (const variable of this.parameterMap.values()) variable.dispose();
    for (const variable of this.bufferMap.values()) variable.dispose();
    for (const child of this.childMap.values()) child.dispose();
    this.parameterMap.clear();
    this.bufferMap.clear();
    this.childMap.clear();
  }
}

function joinName(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

/** An ordered list of modules, named '0', '1', ... like `torch.nn.ModuleList`. */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[] = [];

  constructor(items: readonly M[] = []) {
    super();
    for (const item of items) this.push(item);
  }

  push(item: M): void {
    this.addModule(String(this.items.length), item);
    this.items.push(item);
  }

  get length(): number {
    return this.items.length;
  }

  at(index: number): M {
    const item = this.items[index];
    if (item === undefined) throw new RangeError(`ModuleList index ${index} out of range [0, ${this.items.length})`);
    return item;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}
