/**
 * The component registries. Each module registers itself when imported; importing
 * `src/index.ts` registers every built-in component.
 */
import type { Classifier } from '../models/classifiers/types.ts';
import type { Assigner, BoxCoder, PriorGenerator } from '../models/task_modules/types.ts';
import type { Backbone, Detector, Neck } from '../models/types.ts';
import { Registry } from './registry.ts';

export { Registry, type ComponentConfig } from './registry.ts';

export const BACKBONES = new Registry<Backbone>('BACKBONES');
export const NECKS = new Registry<Neck>('NECKS');
export const DENSE_HEADS = new Registry<unknown>('DENSE_HEADS');
export const ROI_HEADS = new Registry<unknown>('ROI_HEADS');
export const DETECTORS = new Registry<Detector>('DETECTORS');
export const CLASSIFIERS = new Registry<Classifier>('CLASSIFIERS');
export const DATASETS = new Registry<unknown>('DATASETS');
export const TRANSFORMS = new Registry<unknown>('TRANSFORMS');
export const LOSSES = new Registry<unknown>('LOSSES');
export const ASSIGNERS = new Registry<Assigner>('ASSIGNERS');
export const SAMPLERS = new Registry<unknown>('SAMPLERS');
export const BOX_CODERS = new Registry<BoxCoder>('BOX_CODERS');
export const ANCHOR_GENERATORS = new Registry<PriorGenerator>('ANCHOR_GENERATORS');

// Registries still typed `unknown` get their element interface when the first component of
// that kind lands; until then each builder casts to the interface it needs.
