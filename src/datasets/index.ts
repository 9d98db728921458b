/** Data loading: COCO datasets, image decoding, transforms, collation and the data loader. Importing it registers CocoDataset and the transforms. */
export { CocoDataset, describeDrops, type CocoDatasetOptions, type DropCounts } from './coco_dataset.ts';
export { parseCocoJson, readCocoFile, type CocoFile } from './coco_json.ts';
export { collate, type Batch, type CollateOptions } from './collate.ts';
export { decodeImage, decodeImageFile, writePng, type DecodeOptions, type RgbImage } from './image_io.ts';
export { DataLoader, type DataLoaderOptions, type IterateOptions, type LoadedBatch } from './loader.ts';
export { createRandom, mixSeed, shuffledIndices, type RandomSource } from './random.ts';
export type { AnnotationInfo, Dataset, Sample, SampleImage, Transform, TransformContext } from './sample.ts';
export * from './transforms/index.ts';
