/**
 * Registers the data transforms in TRANSFORMS and builds pipelines from their configs.
 * Configs use MMDetection 2.x names in camelCase, for example
 * `{ type: 'Resize', imgScale: [1333, 800], keepRatio: true }`.
 */
import type { TransformConfig } from '../../config/component_types.ts';
import { TRANSFORMS } from '../../registry/index.ts';
import { ConfigError } from '../../utils/errors.ts';
import type { Sample, Transform, TransformContext } from '../sample.ts';
import { Pad, RandomFlip, Resize } from './geometric.ts';
import { LoadAnnotations, LoadImageFromFile } from './loading.ts';
import { Normalize } from './photometric.ts';

export { Pad, RandomFlip, Resize, flipImageHorizontal, padImage, rescaleSize } from './geometric.ts';
export { LoadAnnotations, LoadImageFromFile } from './loading.ts';
export { IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, Normalize } from './photometric.ts';
export { resizeBilinear } from './bilinear.ts';

for (const [type, create] of [
  ['LoadImageFromFile', (options: object) => new LoadImageFromFile(options)],
  ['LoadAnnotations', (options: object) => new LoadAnnotations(options)],
  ['Resize', (options: object) => new Resize(options)],
  ['RandomFlip', (options: object) => new RandomFlip(options)],
  ['Normalize', (options: object) => new Normalize(options)],
  ['Pad', (options: object) => new Pad(options)],
] as const) {
  TRANSFORMS.register(type, create);
}

/** A pipeline: transforms applied in order to each sample. */
export class Compose implements Transform {
  readonly type = 'Compose';

  constructor(readonly transforms: readonly Transform[]) {}

  async apply(sample: Sample, context: TransformContext): Promise<Sample> {
    let current = sample;
    for (const transform of this.transforms) current = await transform.apply(current, context);
    return current;
  }
}

/**
 * Builds a pipeline from transform configs. `path` is where the list sits in the config
 * (for example `data.train.pipeline`) and prefixes every error.
 */
export function buildPipeline(configs: readonly TransformConfig[], path: string): Compose {
  if (!Array.isArray(configs)) {
    throw new ConfigError(`${path}: expected a list of transform configs, got ${JSON.stringify(configs)}`);
  }
  const transforms = configs.map((config, index) => {
    const itemPath = `${path}[${index}]`;
    try {
      return TRANSFORMS.build(config, itemPath) as Transform;
    } catch (error) {
      // Registry errors already carry the path; option errors from constructors do not.
      if (error instanceof ConfigError) throw new ConfigError(`${itemPath}: ${error.message}`, { cause: error });
      throw error;
    }
  });
  return new Compose(transforms);
}
