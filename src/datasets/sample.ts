/**
 * The record that flows through a data pipeline, and the transform interface.
 *
 * A dataset creates a Sample with the image's file path and its parsed annotations. Then the
 * transforms fill in and change the rest: LoadImageFromFile decodes the pixels,
 * LoadAnnotations copies the boxes, and Resize, RandomFlip, Normalize and Pad change the
 * image and boxes together. Only `collate` turns samples into a tensor.
 *
 * Shapes use M for the ground-truth boxes of one image and M' for its crowd (ignored)
 * boxes. Boxes are absolute-pixel xyxy in the coordinates of the current image.
 */
import type { TransformConfig } from '../config/component_types.ts';
import { ConfigError } from '../utils/errors.ts';
import type { RandomSource } from './random.ts';

/** Annotations of one image as the dataset parsed them, in the coordinates of the annotation file. */
export interface AnnotationInfo {
  /** `[M, 4]` xyxy boxes. */
  boxes: Float32Array;
  /** `[M]` contiguous labels 0..K-1. */
  labels: Int32Array;
  /** `[M', 4]` xyxy boxes of crowd regions. */
  ignoredBoxes: Float32Array;
}

/** Pixels of the current image, row-major `[height, width, 3]`: uint8 after loading, float32 after Normalize. */
export interface SampleImage {
  data: Uint8Array | Float32Array;
  height: number;
  width: number;
}

export interface Sample {
  imageId: number;
  filePath: string;
  /** Image size in the annotation file: [height, width]. Undefined for images without a record. */
  annotatedShape?: [number, number];
  /** Annotations as parsed by the dataset; LoadAnnotations copies them into the fields below. */
  annotationInfo?: AnnotationInfo;

  image?: SampleImage;
  /** Size of the image as decoded, before any transform: [height, width]. */
  originalShape?: [number, number];
  /** Size after resizing, before padding: [height, width]. */
  imageShape?: [number, number];
  /** Size after padding: [height, width]. Collate replaces it with the batch tensor's size. */
  padShape?: [number, number];
  /** Factors that map original coordinates to resized ones: [scaleX, scaleY]. */
  scaleFactor: [number, number];
  flipped: boolean;

  /** `[M, 4]` xyxy ground-truth boxes, set by LoadAnnotations. */
  boxes?: Float32Array;
  /** `[M]` labels, set by LoadAnnotations. */
  labels?: Int32Array;
  /** `[M', 4]` crowd boxes, set by LoadAnnotations. */
  ignoredBoxes?: Float32Array;
  /** True once the boxes were checked against (and if needed scaled to) the decoded image size. */
  annotationsMatchImage?: boolean;
}

/** Per-sample state handed to every transform. */
export interface TransformContext {
  /** Random source of this sample; the loader seeds it from (seed, epoch, position). */
  random: RandomSource;
}

/** One step of a data pipeline. Transforms may change the sample in place and return it. */
export interface Transform {
  /** The registered type name, for error messages and logs. */
  readonly type: string;
  apply(sample: Sample, context: TransformContext): Sample | Promise<Sample>;
}

/** Dataset interface that DataLoader uses: the size, the samples and optional orientation flags. */
export interface Dataset {
  readonly length: number;
  /** Creates the sample at `index` and runs the pipeline on it. */
  getItem(index: number, context: TransformContext): Promise<Sample>;
  /** 1 when the image at `index` is wider than tall, else 0 (for aspect-ratio grouping). */
  aspectRatioFlag?(index: number): number;
  /**
   * Creates the sample at `index` without running the pipeline. Together with
   * `pipelineConfigs` it lets DataLoader run the pipeline in worker threads.
   */
  prepareItem?(index: number): Sample;
  /** The configs of the pipeline that `getItem` runs. */
  readonly pipelineConfigs?: readonly TransformConfig[];
}

/** Creates an empty sample for the image at `filePath`. */
export function createSample(imageId: number, filePath: string): Sample {
  return { imageId, filePath, scaleFactor: [1, 1], flipped: false };
}

/** Returns the sample's image, or throws ConfigError naming the transform that needed it. */
export function requireImage(sample: Sample, transformType: string): SampleImage {
  if (sample.image === undefined) {
    throw new ConfigError(`${transformType}: sample of image ${sample.imageId} (${sample.filePath}) has no image; put LoadImageFromFile first`);
  }
  return sample.image;
}
