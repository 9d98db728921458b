/**
 * Worker-thread side of the DataLoader's pipeline pool. The parent sends the pipeline's
 * transform configs once (in `workerData`), then one message per sample. The worker runs
 * the pipeline with a random source seeded as the parent would seed it and posts the
 * sample back, moving the image buffer instead of copying it.
 */
import { parentPort, workerData } from 'node:worker_threads';

import type { TransformConfig } from '../config/component_types.ts';
import { createRandom } from './random.ts';
import type { Sample } from './sample.ts';
import { buildPipeline } from './transforms/index.ts';

export interface PipelineWorkerData {
  pipeline: TransformConfig[];
  /** Modules to import before building the pipeline, such as ones that register custom transforms. */
  imports: string[];
}

export interface PipelineTask {
  id: number;
  sample: Sample;
  seed: number;
}

export type PipelineResult =
  | { id: number; sample: Sample }
  | { id: number; error: { name: string; message: string; stack?: string } };

if (parentPort !== null) {
  const port = parentPort;
  const data = workerData as PipelineWorkerData;
  for (const specifier of data.imports) await import(specifier);
  const pipeline = buildPipeline(data.pipeline, 'DataLoader worker pipeline');

  port.on('message', (task: PipelineTask) => {
    pipeline.apply(task.sample, { random: createRandom(task.seed) }).then(
      (sample) => {
        // Move the pixels when they own their whole buffer; a view into a shared buffer is copied.
        const pixels = sample.image?.data;
        const ownsBuffer = pixels !== undefined && pixels.byteOffset === 0 && pixels.byteLength === pixels.buffer.byteLength;
        const transfer = ownsBuffer ? [pixels.buffer as ArrayBuffer] : [];
        port.postMessage({ id: task.id, sample } satisfies PipelineResult, transfer);
      },
      (error: unknown) => {
        const { name, message, stack } = error instanceof Error ? error : new Error(String(error));
        port.postMessage({ id: task.id, error: { name, message, ...(stack === undefined ? {} : { stack }) } } satisfies PipelineResult);
      },
    );
  });
}
