/**
 * Times training steps of the quick-start RetinaNet (configs/quickstart/retinanet_rla_tiny_coco_mini.ts)
 * on real batches from data/coco-mini, and prints where the kernel time goes.
 *
 *   npx tsx tools/bench_train_step.ts [--backend wasm|cpu|tensorflow|auto] [--norm gn|bn]
 *       [--steps N] [--warmup N] [--profile-steps N] [--batches N] [--top N] [--json FILE]
 *       [--cfg-options K=V ...]
 *
 * The steps cycle over `--batches` loaded batches (two images each, about 320x480). Seconds
 * per step is the median wall time of `--steps` steps after `--warmup` untimed steps. The
 * median CPU time of the process per step is printed too, because it changes less than wall
 * time when other jobs compete for the cores. The
 * kernel table comes from separate steps run under tf.profile, as milliseconds per step and
 * per kernel. tf.profile also lists every tf.customGrad call as one entry named after the
 * enclosing scope ("unnamed scope" when there is none), whose time includes the kernels it
 * ran. The table lists those entries apart and leaves them out of the total. The tool fails
 * when the timed steps change tf.memory().numTensors.
 */
import { writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';

import { loadDetectionConfig } from '../src/apis/config_loading.ts';
import { buildDetector } from '../src/apis/build.ts';
import { initBackend } from '../src/backends/index.ts';
import { SGD } from '../src/engine/optimizer.ts';
import { trainStep } from '../src/engine/train_step.ts';
import { setInitSeed } from '../src/nn/init.ts';
import { RladetError } from '../src/utils/errors.ts';
import { UsageError, parseBackendOption, parseCommandLine, runMain, takeMultiValueOption } from '../src/utils/cli.ts';
import { loadTrainingBatches, median, parseCount } from './bench_common.ts';

const CONFIG_PATH = 'configs/quickstart/retinanet_rla_tiny_coco_mini.ts';

/**
 * Config overrides of each norm variant. 'bn' is the quick-start config as written, whose
 * SyncBN is batch norm in one process.
 */
const GROUP_NORM = '{"type":"GN","numGroups":8}';
const NORM_OVERRIDES: Record<string, string[]> = {
  gn: [`model.backbone.norm=${GROUP_NORM}`, `model.bboxHead.norm=${GROUP_NORM}`],
  bn: ['model.backbone.norm=BN', 'model.bboxHead.norm=BN'],
};

const USAGE = `usage: npx tsx tools/bench_train_step.ts [options]

Times training steps of the quick-start RetinaNet (${CONFIG_PATH}) on batches from
data/coco-mini and prints seconds per step, the kernel time per step and the tensor count.

options:
  --backend NAME          wasm | cpu | tensorflow | auto (default wasm)
  --norm gn|bn            gn: group norm in backbone and head; bn: batch norm in backbone
                          and head, as the config is written (default gn)
  --steps N               timed steps; the median is reported (default 5)
  --warmup N              untimed steps before timing (default 2)
  --profile-steps N       steps run under tf.profile for the kernel table (default 2, 0 skips it)
  --batches N             distinct batches the steps cycle over (default 3)
  --top N                 kernels listed in the table (default 20)
  --json FILE             also write the results to FILE as JSON
  --cfg-options K=V ...   further config overrides, e.g. data.imagesPerBatch=1
  -h, --help              show this help`;

interface KernelTotal {
  kernel: string;
  /** Whether the entry is a tf.customGrad call rather than a registered kernel. */
  composite: boolean;
  /** Milliseconds per step. */
  ms: number;
  /** Calls per step. */
  calls: number;
}

/** Runs `steps` steps under tf.profile and returns the kernel time per step, largest first. */
async function profileKernels(step: (index: number) => void, steps: number): Promise<KernelTotal[]> {
  const backendName = tf.getBackend();
  const totals = new Map<string, KernelTotal>();
  for (let i = 0; i < steps; i++) {
    const info = await tf.profile(() => step(i));
    for (const kernel of info.kernels) {
      const composite = tf.getKernel(kernel.name, backendName) === undefined;
      const total = totals.get(kernel.name) ?? { kernel: kernel.name, composite, ms: 0, calls: 0 };
      total.ms += typeof kernel.kernelTimeMs === 'number' ? kernel.kernelTimeMs : 0;
      total.calls += 1;
      totals.set(kernel.name, total);
    }
  }
  return [...totals.values()]
    .map((total) => ({ ...total, ms: total.ms / steps, calls: total.calls / steps }))
    .sort((a, b) => b.ms - a.ms);
}

function printKernels(kernels: KernelTotal[]): void {
  console.log(`${'kernel'.padEnd(28)} ${'ms'.padStart(8)} ${'calls'.padStart(7)}`);
  for (const kernel of kernels) {
    console.log(`${kernel.kernel.padEnd(28)} ${kernel.ms.toFixed(1).padStart(8)} ${kernel.calls.toFixed(0).padStart(7)}`);
  }
}

async function main(): Promise<void> {
  const { rest, values: extraOverrides } = takeMultiValueOption(process.argv.slice(2), '--cfg-options');
  const { values } = parseCommandLine({
    args: rest,
    options: {
      backend: { type: 'string', default: 'wasm' },
      norm: { type: 'string', default: 'gn' },
      steps: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '2' },
      'profile-steps': { type: 'string', default: '2' },
      batches: { type: 'string', default: '3' },
      top: { type: 'string', default: '20' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const backendChoice = parseBackendOption(values.backend)!;
  const normOverrides = NORM_OVERRIDES[values.norm];
  if (normOverrides === undefined) throw new UsageError(`--norm: expected 'gn' or 'bn', got '${values.norm}'`);
  const steps = parseCount(values.steps, '--steps');
  const warmup = parseCount(values.warmup, '--warmup', true);
  const profileSteps = parseCount(values['profile-steps'], '--profile-steps', true);
  const batchCount = parseCount(values.batches, '--batches');
  const top = parseCount(values.top, '--top');

  const config = await loadDetectionConfig(CONFIG_PATH, [...normOverrides, ...extraOverrides]);
  const backend = await initBackend(backendChoice);
  setInitSeed(config.seed ?? 0);
  const model = buildDetector(config.model);
  const optimizer = new SGD(config.optimizer);

  const batches = await loadTrainingBatches(config, batchCount);

  // A small learning rate keeps the weights, and so the kernel inputs, close to their initial values.
  const lr = 0.001;
  let iteration = 0;
  const step = (index: number) => {
    iteration += 1;
    trainStep(model, batches[index % batches.length]!, optimizer, lr, iteration);
  };

  for (let i = 0; i < warmup; i++) step(i);
  const tensorsBefore = tf.memory().numTensors;
  const seconds: number[] = [];
  const cpuSeconds: number[] = [];
  for (let i = 0; i < steps; i++) {
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    step(i);
    const cpu = process.cpuUsage(cpuStart);
    seconds.push((performance.now() - start) / 1000);
    cpuSeconds.push((cpu.user + cpu.system) / 1e6);
  }
  const tensorsAfter = tf.memory().numTensors;
  const kernels = profileSteps > 0 ? await profileKernels(step, profileSteps) : [];

  const shapes = batches.map((batch) => batch.images.shape.join('x')).join(', ');
  console.log(`backend ${backend.name}, norm ${values.norm}, batches ${shapes}`);
  console.log(`seconds per step: median ${median(seconds).toFixed(3)} of ${steps} (${seconds.map((s) => s.toFixed(3)).join(' ')})`);
  console.log(`CPU seconds per step: median ${median(cpuSeconds).toFixed(3)} (${cpuSeconds.map((s) => s.toFixed(3)).join(' ')})`);
  console.log(`tf.memory().numTensors: ${tensorsBefore} before the timed steps, ${tensorsAfter} after`);
  if (kernels.length > 0) {
    const registered = kernels.filter((kernel) => !kernel.composite);
    const composite = kernels.filter((kernel) => kernel.composite);
    const total = registered.reduce((sum, kernel) => sum + kernel.ms, 0);
    console.log(`\nkernel time per step, mean of ${profileSteps} profiled steps (total ${total.toFixed(0)} ms)`);
    printKernels(registered.slice(0, top));
    if (composite.length > 0) {
      console.log('\ntf.customGrad calls, whose time includes kernels listed above');
      printKernels(composite.slice(0, top));
    }
  }
  if (values.json !== undefined) {
    const record = {
      backend: backend.name,
      norm: values.norm,
      overrides: [...normOverrides, ...extraOverrides],
      batchShapes: batches.map((batch) => batch.images.shape),
      secondsPerStep: median(seconds),
      stepSeconds: seconds,
      cpuSecondsPerStep: median(cpuSeconds),
      stepCpuSeconds: cpuSeconds,
      numTensorsBefore: tensorsBefore,
      numTensorsAfter: tensorsAfter,
      kernels,
    };
    writeFileSync(values.json, JSON.stringify(record, null, 2) + '\n');
  }

  tf.dispose(batches.map((batch) => batch.images));
  optimizer.disposeState();
  model.dispose();
  if (tensorsAfter !== tensorsBefore) {
    throw new RladetError(`the timed steps changed tf.memory().numTensors from ${tensorsBefore} to ${tensorsAfter}`);
  }
}

runMain(main, USAGE);
