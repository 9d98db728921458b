/**
 * ResNet-101 ImageNet classifier at 224x224, for parameter and multiply-add counts:
 *   npx tsx tools/get_flops.ts configs/imagenet/resnet101.ts
 */
import type { ClassifierConfig } from '../../src/config/component_types.ts';
import { defineConfig } from '../../src/config/config.ts';

export default defineConfig({
  model: {
    type: 'ImageClassifier',
    // Batch statistics in training mode, as in an ImageNet classifier.
    backbone: { type: 'ResNet', depth: 101, normEval: false },
    numClasses: 1000,
  } satisfies ClassifierConfig,
  inputShape: [224, 224],
});
