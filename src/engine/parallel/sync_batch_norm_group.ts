/**
 * Shared memory and barrier through which data-parallel replicas exchange the statistics of
 * their SyncBatchNorm2d layers (src/nn/sync_batch_norm.ts).
 *
 * Each layer has a region of 1 + 2 * channels float64 values per replica, allocated once when
 * training starts. Every SyncBN exchange (a layer's forward or backward in one step) is a round.
 * In a round, each replica writes its values into its slot of the layer's region and publishes
 * a ticket (step and round number) with an Atomics store. It then waits until every replica
 * taking part in the step has published that ticket, and reads the slots in replica order.
 * Rounds alternate between two copies of every region by round parity. A replica can only
 * write round r + 2 after every replica has arrived at round r + 1, and so has finished
 * reading round r, so no replica overwrites values that another one still reads.
 *
 * A worker without images in a step (the last, smaller batch of an epoch) takes part in no
 * round, so its layers miss that step's running-statistics update. Worker 0 then copies its
 * running statistics into shared memory after computing, and the idle workers load them while
 * applying the update, so the running statistics stay identical in every replica.
 */
import * as tf from '@tensorflow/tfjs-core';

import type { Module } from '../../nn/module.ts';
import { SyncBatchNorm2d, type BatchNormSyncGroup, type SyncPhase } from '../../nn/sync_batch_norm.ts';
import { RladetError } from '../../utils/errors.ts';

/** Name and channel count of one SyncBatchNorm2d, in the order of `Module.namedModules()`. */
export interface SyncBatchNormSpec {
  name: string;
  channels: number;
}

/** The shared arrays of SyncBN statistics for one training run. */
export interface SyncBatchNormBuffers {
  /** Float64 values: for each round parity and replica, one slot with every layer's region. */
  values: SharedArrayBuffer;
  /** BigInt64 per replica: the ticket of the latest round it published, step * 2^32 + round. */
  arrivals: SharedArrayBuffer;
  /**
   * Int32 per round parity and replica: layer index * 2 + phase (0 forward, 1 backward) of the
   * round published there. One more Int32 at the end: the step of the running statistics in
   * `runningStats`.
   */
  positions: SharedArrayBuffer;
  /** Float32 running mean and running variance of every layer, in layer order, as worker 0 shares them. */
  runningStats: SharedArrayBuffer;
}

/** Everything a replica needs to join the SyncBN exchange, as the main thread sends it. */
export interface SyncBatchNormSetup {
  layers: SyncBatchNormSpec[];
  buffers: SyncBatchNormBuffers;
  /** Maximum time in seconds that a replica waits at a SyncBN barrier for the others. */
  timeoutSeconds: number;
}

/** Lists the SyncBatchNorm2d layers of `model` with their names and channel counts. */
export function listSyncBatchNorms(model: Module): SyncBatchNormSpec[] {
  return model
    .namedModules()
    .filter(([, module]) => module instanceof SyncBatchNorm2d)
    .map(([name, module]) => ({ name, channels: (module as SyncBatchNorm2d).numFeatures }));
}

/** Returns the float64 offset of each layer's region in a slot, and the slot size. */
function layoutRegions(layers: readonly SyncBatchNormSpec[]): { offsets: number[]; lengths: number[]; slotSize: number } {
  const offsets: number[] = [];
  const lengths: number[] = [];
  let slotSize = 0;
  for (const { channels } of layers) {
    offsets.push(slotSize);
    lengths.push(1 + 2 * channels);
    slotSize += 1 + 2 * channels;
  }
  return { offsets, lengths, slotSize };
}

export function allocateSyncBatchNormBuffers(layers: readonly SyncBatchNormSpec[], workers: number): SyncBatchNormBuffers {
  const { slotSize } = layoutRegions(layers);
  const channels = layers.reduce((sum, layer) => sum + layer.channels, 0);
  return {
    values: new SharedArrayBuffer(2 * workers * slotSize * Float64Array.BYTES_PER_ELEMENT),
    arrivals: new SharedArrayBuffer(workers * BigInt64Array.BYTES_PER_ELEMENT),
    positions: new SharedArrayBuffer((2 * workers + 1) * Int32Array.BYTES_PER_ELEMENT),
    runningStats: new SharedArrayBuffer(2 * channels * Float32Array.BYTES_PER_ELEMENT),
  };
}

const PHASE_CODES: Record<SyncPhase, number> = { forward: 0, backward: 1 };
const ROUND_BITS = 32n;
const ROUND_MASK = (1n << ROUND_BITS) - 1n;

/** One replica's side of the SyncBN exchange, over the shared buffers (see the file comment). */
export class SharedMemorySyncGroup implements BatchNormSyncGroup {
  private readonly values: Float64Array;
  private readonly arrivals: BigInt64Array;
  private readonly positions: Int32Array;
  private readonly runningStats: Float32Array;
  private readonly offsets: number[];
  private readonly lengths: number[];
  private readonly slotSize: number;
  private readonly layerIndices: Map<SyncBatchNorm2d, number>;
  /** The SyncBN layers of the replica's model, in layer order. */
  private readonly layers: SyncBatchNorm2d[];
  private readonly timeoutMs: number;
  private step = 0;
  private round = 0;
  private participants = 0;

  /**
   * Joins the exchange as replica `index` of `workers`. Throws when the SyncBN layers of
   * `model` differ from `setup.layers` (the main thread's model) in order, name or channels.
   */
  constructor(
    model: Module,
    private readonly index: number,
    private readonly workers: number,
    private readonly setup: SyncBatchNormSetup,
  ) {
    const own = listSyncBatchNorms(model);
    const count = Math.max(own.length, setup.layers.length);
    for (let i = 0; i < count; i++) {
      const expected = describeSpec(setup.layers[i]);
      const actual = describeSpec(own[i]);
      if (expected !== actual) {
        throw new RladetError(
          `training worker ${index}: SyncBN layer ${i} is ${actual} but the main thread's model has ${expected}, ` +
            'so the worker must build the same model (same config and the same imported modules)',
        );
      }
    }
    this.layers = model.namedModules().flatMap(([, module]) => (module instanceof SyncBatchNorm2d ? [module] : []));
    this.layerIndices = new Map(this.layers.map((layer, i) => [layer, i]));
    ({ offsets: this.offsets, lengths: this.lengths, slotSize: this.slotSize } = layoutRegions(setup.layers));
    this.values = new Float64Array(setup.buffers.values);
    this.arrivals = new BigInt64Array(setup.buffers.arrivals);
    this.positions = new Int32Array(setup.buffers.positions);
    this.runningStats = new Float32Array(setup.buffers.runningStats);
    this.timeoutMs = setup.timeoutSeconds * 1000;
  }

  /**
   * Starts a training step in which replicas 0 .. participants - 1 have images. Every replica
   * calls it once per step, also one without images, which then takes part in no round.
   */
  beginStep(participants: number): void {
    if (!Number.isInteger(participants) || participants < 1 || participants > this.workers) {
      throw new RangeError(`SyncBN: participants must be an integer in [1, ${this.workers}], got ${participants}`);
    }
    this.step += 1;
    this.round = 0;
    this.participants = participants;
  }

  /** Whether this step has workers without images, which must then load worker 0's running statistics. */
  get hasIdleWorkers(): boolean {
    return this.participants < this.workers;
  }

  /** Copies the running statistics of every layer into shared memory, for the idle workers of this step. */
  shareRunningStats(): void {
    let offset = 0;
    for (const layer of this.layers) {
      for (const buffer of [layer.runningMean, layer.runningVar]) {
        this.runningStats.set(buffer.dataSync() as Float32Array, offset);
        offset += buffer.size;
      }
    }
    Atomics.store(this.positions, 2 * this.workers, this.step);
  }

  /** Loads the running statistics that worker 0 shared in this step into every layer. */
  loadSharedRunningStats(): void {
    const sharedStep = Atomics.load(this.positions, 2 * this.workers);
    if (sharedStep !== this.step) {
      throw new RladetError(`training worker ${this.index}: worker 0 shared the SyncBN running statistics of step ${sharedStep}, expected step ${this.step}`);
    }
    let offset = 0;
    for (const layer of this.layers) {
      for (const buffer of [layer.runningMean, layer.runningVar]) {
        const values = this.runningStats.slice(offset, offset + buffer.size);
        tf.tidy(() => buffer.assign(tf.tensor1d(values)));
        offset += buffer.size;
      }
    }
  }

  allGather(layer: SyncBatchNorm2d, phase: SyncPhase, local: Float64Array): readonly Float64Array[] {
    const layerIndex = this.layerIndices.get(layer);
    if (layerIndex === undefined) {
      throw new RladetError(`training worker ${this.index}: a SyncBN layer that is not part of the replica's model ran in training mode, so no other worker can match it`);
    }
    const name = this.setup.layers[layerIndex]!.name;
    if (this.index >= this.participants) {
      throw new RladetError(`training worker ${this.index}: SyncBN layer '${name}' ran in a step in which this worker has no images`);
    }
    if (local.length > this.lengths[layerIndex]!) {
      throw new RladetError(`training worker ${this.index}: SyncBN layer '${name}' sent ${local.length} values, but its region has room for ${this.lengths[layerIndex]}`);
    }

    this.round += 1;
    const parity = this.round & 1;
    const code = layerIndex * 2 + PHASE_CODES[phase];
    this.values.set(local, this.regionStart(parity, this.index, layerIndex));
    Atomics.store(this.positions, parity * this.workers + this.index, code);
    const ticket = (BigInt(this.step) << ROUND_BITS) | BigInt(this.round);
    Atomics.store(this.arrivals, this.index, ticket);
    Atomics.notify(this.arrivals, this.index);

    this.waitForParticipants(ticket, name, phase);

    const gathered: Float64Array[] = [];
    for (let replica = 0; replica < this.participants; replica++) {
      const theirCode = Atomics.load(this.positions, parity * this.workers + replica);
      if (theirCode !== code) {
        throw new RladetError(
          `SyncBN replicas are out of step at exchange ${this.round} of this step: training worker ${this.index} is at ` +
            `${this.describeCode(code)} but training worker ${replica} is at ${this.describeCode(theirCode)}. Every replica must ` +
            'run the same SyncBN layers in the same order, so the model and the layers that the loss depends on must not vary between workers.',
        );
      }
      const start = this.regionStart(parity, replica, layerIndex);
      gathered.push(this.values.subarray(start, start + local.length));
    }
    return gathered;
  }

  /** Blocks until every participant has published `ticket` or a later one, or throws at the timeout. */
  private waitForParticipants(ticket: bigint, name: string, phase: SyncPhase): void {
    const deadline = performance.now() + this.timeoutMs;
    for (let replica = 0; replica < this.participants; replica++) {
      for (;;) {
        const seen = Atomics.load(this.arrivals, replica);
        if (seen >= ticket) break;
        const remaining = deadline - performance.now();
        if (remaining <= 0) throw this.timeoutError(ticket, name, phase);
        Atomics.wait(this.arrivals, replica, seen, remaining);
      }
    }
  }

  private timeoutError(ticket: bigint, name: string, phase: SyncPhase): RladetError {
    const missing: string[] = [];
    for (let replica = 0; replica < this.participants; replica++) {
      const seen = Atomics.load(this.arrivals, replica);
      if (seen >= ticket) continue;
      missing.push(`training worker ${replica} (${this.describeTicket(replica, seen)})`);
    }
    return new RladetError(
      `SyncBN layer '${name}' (${phase}) timed out after ${this.timeoutMs / 1000} s at exchange ${this.round} of this step, ` +
        `waiting for ${missing.join(', ')}. A worker that does not arrive has failed or is stuck.`,
    );
  }

  /** Describes where a replica is from its latest ticket, for timeout messages. */
  private describeTicket(replica: number, seen: bigint): string {
    if (seen >> ROUND_BITS < BigInt(this.step)) return 'it has not reached a SyncBN exchange in this step';
    const round = Number(seen & ROUND_MASK);
    const code = Atomics.load(this.positions, (round & 1) * this.workers + replica);
    return `its latest exchange is ${round}, at ${this.describeCode(code)}`;
  }

  private describeCode(code: number): string {
    const layer = this.setup.layers[code >> 1];
    const phase = (code & 1) === 0 ? 'forward' : 'backward';
    return layer === undefined ? `unknown layer code ${code}` : `'${layer.name}' (${phase})`;
  }

  private regionStart(parity: number, replica: number, layerIndex: number): number {
    return (parity * this.workers + replica) * this.slotSize + this.offsets[layerIndex]!;
  }
}

function describeSpec(spec: SyncBatchNormSpec | undefined): string {
  return spec === undefined ? 'missing' : `'${spec.name}' with ${spec.channels} channels`;
}
