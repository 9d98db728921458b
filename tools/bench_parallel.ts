/**
 * Times quick-start training steps (configs/quickstart/retinanet_rla_tiny_coco_mini.ts) in one
 * process and data-parallel in worker threads, on the same batches from data/coco-mini.
 *
 *   npx tsx tools/bench_parallel.ts [--backend wasm|cpu] [--workers 1,2] [--rounds N] [--steps N]
 *       [--batches N] [--json FILE] [--cfg-options K=V ...]
 *
 * Worker count 1 runs the single-process trainStep, which the runner uses for one worker. The
 * rounds alternate between the worker counts, each round timing `--steps` steps after one untimed
 * step, so that a change in the machine's load hits every count alike. Seconds per step is the
 * median wall time over all rounds, and CPU seconds per step counts every thread of the process.
 * The 1-minute load average is printed before and after, because other jobs on the machine slow
 * the steps down. On Linux the tool also prints the CPU time of the thread that trains (the
 * busiest worker for N workers), which other jobs do not inflate as much as wall time. It is
 * an estimate of the wall time per step on a machine with a free core per worker.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';

import { loadDetectionConfig } from '../src/apis/config_loading.ts';
import { buildDetector } from '../src/apis/build.ts';
import { initBackend } from '../src/backends/index.ts';
import { buildOptimizer } from '../src/engine/optimizer.ts';
import { ParallelTrainer, type ParallelStepResult } from '../src/engine/parallel/parallel_trainer.ts';
import { threadCpuSeconds } from '../src/engine/parallel/thread_cpu.ts';
import { trainStep, type Batch } from '../src/engine/train_step.ts';
import { setInitSeed } from '../src/nn/init.ts';
import { RladetError } from '../src/utils/errors.ts';
import { UsageError, parseCommandLine, runMain, takeMultiValueOption } from '../src/utils/cli.ts';
import { loadTrainingBatches, median, parseCount } from './bench_common.ts';

const CONFIG_PATH = 'configs/quickstart/retinanet_rla_tiny_coco_mini.ts';

const USAGE = `usage: npx tsx tools/bench_parallel.ts [options]

Times training steps of the quick-start RetinaNet (${CONFIG_PATH}) with 1 worker (one
process) and with N data-parallel worker threads, on the same batches from data/coco-mini.

options:
  --backend NAME          wasm | cpu (default wasm)
  --workers LIST          comma-separated worker counts to compare (default 1,2)
  --rounds N              rounds; each round times every worker count once (default 3)
  --steps N               timed steps per worker count and round (default 4)
  --batches N             distinct batches the steps cycle over (default 3)
  --json FILE             also write the results to FILE as JSON
  --cfg-options K=V ...   config overrides, e.g. data.imagesPerBatch=4
  -h, --help              show this help`;

/** One way to run steps: in this process (1 worker) or through a ParallelTrainer. */
interface Runner {
  workers: number;
  step(batch: Batch, iteration: number): Promise<{ threadCpuSeconds: number | undefined; allWorkersCpuSeconds?: number; parallel?: ParallelStepResult }>;
  close(): Promise<void>;
}

interface Timings {
  seconds: number[];
  cpuSeconds: number[];
  /** Per timed step: CPU seconds of the training thread, or of the busiest worker (Linux only). */
  threadCpuSeconds: number[];
  /** Per timed step: CPU seconds of all worker threads together (Linux only, empty for 1 worker). */
  allWorkersCpuSeconds: number[];
  /** Per timed step: the main thread's wall time of each parallel phase (empty for 1 worker). */
  phases: Array<ParallelStepResult['phaseSeconds']>;
  workerTensors: number[][];
}

async function main(): Promise<void> {
  const { rest, values: overrides } = takeMultiValueOption(process.argv.slice(2), '--cfg-options');
  const { values } = parseCommandLine({
    args: rest,
    options: {
      backend: { type: 'string', default: 'wasm' },
      workers: { type: 'string', default: '1,2' },
      rounds: { type: 'string', default: '3' },
      steps: { type: 'string', default: '4' },
      batches: { type: 'string', default: '3' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (values.backend !== 'wasm' && values.backend !== 'cpu') throw new UsageError(`--backend: expected wasm or cpu, got '${values.backend}'`);
  const workerCounts = values.workers.split(',').map((item) => parseCount(item, '--workers'));
  const rounds = parseCount(values.rounds, '--rounds');
  const steps = parseCount(values.steps, '--steps');
  const batchCount = parseCount(values.batches, '--batches');

  const config = await loadDetectionConfig(CONFIG_PATH, overrides);
  const backend = await initBackend(values.backend);
  const batches = await loadTrainingBatches(config, batchCount);
  for (const count of workerCounts) {
    const images = batches[0]!.images.shape[0];
    if (count > images) {
      throw new UsageError(`--workers: ${count} workers need at least ${count} images per batch, but a batch has ${images}. Lower --workers or raise data.imagesPerBatch.`);
    }
  }

  // A small learning rate keeps the weights, and so the kernel inputs, close to their initial values.
  const lr = 0.001;
  const runners: Runner[] = [];
  for (const workers of workerCounts) {
    setInitSeed(config.seed ?? 0);
    const model = buildDetector(config.model);
    const optimizer = buildOptimizer(config.optimizer);
    if (workers === 1) {
      runners.push({
        workers,
        step: async (batch, iteration) => {
          const cpuStart = threadCpuSeconds();
          trainStep(model, batch, optimizer, lr, iteration);
          const cpuEnd = threadCpuSeconds();
          return { threadCpuSeconds: cpuStart === undefined || cpuEnd === undefined ? undefined : cpuEnd - cpuStart };
        },
        close: async () => {
          optimizer.disposeState();
          model.dispose();
        },
      });
      continue;
    }
    const started = performance.now();
    const trainer = await ParallelTrainer.start(model, optimizer, { workers, backend: values.backend, model: config.model, optimizer: config.optimizer });
    console.log(`${workers} workers started in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    runners.push({
      workers,
      step: async (batch, iteration) => {
        const result = await trainer.step(batch, lr, iteration);
        const cpu = result.workerCpuSeconds;
        if (cpu === undefined) return { threadCpuSeconds: undefined, parallel: result };
        return { threadCpuSeconds: Math.max(...cpu), allWorkersCpuSeconds: cpu.reduce((sum, seconds) => sum + seconds, 0), parallel: result };
      },
      close: async () => {
        await trainer.close();
        optimizer.disposeState();
        model.dispose();
      },
    });
  }

  const loadBefore = loadavg()[0]!;
  const timings = new Map<number, Timings>(workerCounts.map((workers) => [workers, { seconds: [], cpuSeconds: [], threadCpuSeconds: [], allWorkersCpuSeconds: [], phases: [], workerTensors: [] }]));
  const iterations = new Map<number, number>(workerCounts.map((workers) => [workers, 0]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (const runner of runners) {
        const timing = timings.get(runner.workers)!;
        for (let i = 0; i <= steps; i++) {
          const iteration = iterations.get(runner.workers)! + 1;
          iterations.set(runner.workers, iteration);
          const batch = batches[iteration % batches.length]!;
          const start = performance.now();
          const cpuStart = process.cpuUsage();
          const result = await runner.step(batch, iteration);
          const cpu = process.cpuUsage(cpuStart);
          // The first step of each round is untimed because it may pay for switching from the other
          // runners (cold caches, idle threads waking up).
          if (i === 0) continue;
          timing.seconds.push((performance.now() - start) / 1000);
          timing.cpuSeconds.push((cpu.user + cpu.system) / 1e6);
          if (result.threadCpuSeconds !== undefined) timing.threadCpuSeconds.push(result.threadCpuSeconds);
          if (result.allWorkersCpuSeconds !== undefined) timing.allWorkersCpuSeconds.push(result.allWorkersCpuSeconds);
          if (result.parallel !== undefined) {
            timing.phases.push(result.parallel.phaseSeconds);
            timing.workerTensors.push(result.parallel.workerTensors);
          }
        }
      }
    }
  } finally {
    for (const runner of runners) await runner.close();
  }
  const loadAfter = loadavg()[0]!;

  const shapes = batches.map((batch) => batch.images.shape.join('x')).join(', ');
  console.log(`backend ${backend.name}, ${availableParallelism()} cores, batches ${shapes}`);
  console.log(`1-minute load average: ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after`);
  const base = median(timings.get(workerCounts[0]!)!.seconds);
  const baseThreadCpu = timings.get(workerCounts[0]!)!.threadCpuSeconds;
  const results = workerCounts.map((workers) => {
    const timing = timings.get(workers)!;
    const secondsPerStep = median(timing.seconds);
    const phaseMedians =
      timing.phases.length === 0
        ? undefined
        : {
            split: median(timing.phases.map((phase) => phase.split)),
            compute: median(timing.phases.map((phase) => phase.compute)),
            reduce: median(timing.phases.map((phase) => phase.reduce)),
            apply: median(timing.phases.map((phase) => phase.apply)),
          };
    console.log(
      `${workers} worker${workers === 1 ? ' ' : 's'}: ${secondsPerStep.toFixed(3)} s per step (median of ${timing.seconds.length}), ` +
        `CPU ${median(timing.cpuSeconds).toFixed(3)} s per step, ${(base / secondsPerStep).toFixed(2)}x the speed of ${workerCounts[0]} worker(s)`,
    );
    const threadCpu = timing.threadCpuSeconds.length === 0 ? undefined : median(timing.threadCpuSeconds);
    if (threadCpu !== undefined && baseThreadCpu.length > 0) {
      const label = workers === 1 ? 'training thread' : 'busiest worker thread';
      const all = timing.allWorkersCpuSeconds.length === 0 ? '' : ` (all workers: ${median(timing.allWorkersCpuSeconds).toFixed(3)} s)`;
      console.log(`    CPU of the ${label}: ${threadCpu.toFixed(3)} s per step${all}, ${(median(baseThreadCpu) / threadCpu).toFixed(2)}x`);
    }
    if (phaseMedians !== undefined) {
      const text = Object.entries(phaseMedians).map(([phase, seconds]) => `${phase} ${(seconds * 1000).toFixed(1)} ms`).join(', ');
      console.log(`    median phases: ${text}`);
    }
    return {
      workers,
      secondsPerStep,
      stepSeconds: timing.seconds,
      cpuSecondsPerStep: median(timing.cpuSeconds),
      stepCpuSeconds: timing.cpuSeconds,
      threadCpuSecondsPerStep: threadCpu,
      allWorkersCpuSecondsPerStep: timing.allWorkersCpuSeconds.length === 0 ? undefined : median(timing.allWorkersCpuSeconds),
      stepThreadCpuSeconds: timing.threadCpuSeconds,
      phaseMedians,
    };
  });

  if (values.json !== undefined) {
    const record = { backend: backend.name, cores: availableParallelism(), overrides, batchShapes: batches.map((batch) => batch.images.shape), loadBefore, loadAfter, results };
    writeFileSync(values.json, JSON.stringify(record, null, 2) + '\n');
  }
  tf.dispose(batches.map((batch) => batch.images));

  for (const workers of workerCounts) {
    const counts = timings.get(workers)!.workerTensors;
    if (counts.some((step) => step.join(',') !== counts[0]!.join(','))) {
      throw new RladetError(`the workers' tf.memory().numTensors changed across the timed steps of ${workers} workers: ${JSON.stringify(counts)}`);
    }
  }
}

runMain(main, USAGE);
