/**
 * Shared memory through which data-parallel replicas average their gradients.
 *
 * Every trainable parameter has a fixed offset in a flat float32 vector of `size` elements.
 * Each worker owns one slot (a vector) of the gradient buffer and writes its gradients there.
 * Then each worker averages a contiguous chunk of elements over the slots and writes the
 * mean into slot 0, so the chunks together give the averaged gradient that every worker reads.
 * The buffers are allocated once, when training starts.
 */
import { RladetError } from '../../utils/errors.ts';

/** Name and shape of one trainable parameter, in the order of `Module.trainableParameters()`. */
export interface ParameterSpec {
  name: string;
  shape: number[];
}

export interface ParameterLayout {
  parameters: ParameterSpec[];
  /** Element offset of each parameter in a slot. */
  offsets: number[];
  /** Element count of each parameter. */
  sizes: number[];
  /** Elements per slot: the sum of `sizes`. */
  size: number;
}

/** Builds the layout of a flat gradient vector from the trainable parameters, in their order. */
export function layoutParameters(parameters: readonly ParameterSpec[]): ParameterLayout {
  const offsets: number[] = [];
  const sizes: number[] = [];
  let size = 0;
  for (const { shape } of parameters) {
    const count = shape.reduce((product, side) => product * side, 1);
    offsets.push(size);
    sizes.push(count);
    size += count;
  }
  return { parameters: parameters.map(({ name, shape }) => ({ name, shape: [...shape] })), offsets, sizes, size };
}

function describeSpec(spec: ParameterSpec | undefined): string {
  return spec === undefined ? 'nothing' : `'${spec.name}' [${spec.shape.join(', ')}]`;
}

/**
 * Throws when `actual` (a worker's trainable parameters) differs from `expected` (the main
 * thread's) in count, order, name or shape, naming the first difference.
 */
export function checkSameLayout(expected: readonly ParameterSpec[], actual: readonly ParameterSpec[], owner: string): void {
  const count = Math.max(expected.length, actual.length);
  for (let i = 0; i < count; i++) {
    const expectedText = describeSpec(expected[i]);
    const actualText = describeSpec(actual[i]);
    if (expectedText !== actualText) {
      throw new RladetError(
        `${owner}: trainable parameter ${i} is ${actualText} but the main thread's model has ${expectedText}, so ` +
          'the worker must build the same model (same config and the same imported modules)',
      );
    }
  }
}

/** The shared arrays of one training run, as each worker and the main thread see them. */
export interface GradientBuffers {
  /** `workers` slots of `layout.size` float32 gradients each, slot after slot. */
  gradients: SharedArrayBuffer;
  /** One byte per worker and parameter: 1 when that worker's loss produced a gradient for it. */
  present: SharedArrayBuffer;
  /** Int32 counter that workers increment with Atomics after writing shared data (see `publishWrites`). */
  control: SharedArrayBuffer;
}

export function allocateGradientBuffers(layout: ParameterLayout, workers: number): GradientBuffers {
  return {
    gradients: new SharedArrayBuffer(workers * layout.size * Float32Array.BYTES_PER_ELEMENT),
    present: new SharedArrayBuffer(workers * layout.parameters.length),
    control: new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT),
  };
}

/**
 * Makes this worker's plain writes to the shared buffers visible to a worker that calls
 * `acquireWrites` afterwards. A sequentially consistent Atomics write and a later Atomics read
 * of the same location order the plain accesses around them (ECMAScript memory model), so this
 * does not rely on the message channel for ordering.
 */
export function publishWrites(control: Int32Array): void {
  Atomics.add(control, 0, 1);
}

export function acquireWrites(control: Int32Array): number {
  return Atomics.load(control, 0);
}

/** Elements [start, end) of a slot that worker `index` of `workers` averages. */
export function chunkOf(size: number, index: number, workers: number): { start: number; end: number } {
  const start = Math.floor((size * index) / workers);
  const end = Math.floor((size * (index + 1)) / workers);
  return { start, end };
}

/**
 * Replaces elements [start, end) of slot 0 with the mean of slots 0..active-1. Each element is
 * summed in slot order in float64 and rounded to float32 once, so the result does not depend
 * on which worker computes it or on thread timing. With `active` 1 the slot stays unchanged.
 */
export function averageSlots(gradients: Float32Array, slotSize: number, active: number, start: number, end: number): void {
  if (active === 1) return;
  for (let j = start; j < end; j++) {
    let sum = gradients[j]!;
    for (let slot = 1; slot < active; slot++) sum += gradients[slot * slotSize + j]!;
    gradients[j] = sum / active;
  }
}
