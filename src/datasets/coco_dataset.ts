/**
 * CocoDataset: a COCO instance annotation file plus a folder of images, as MMDetection 2.x's
 * CocoDataset.
 *
 * Parsing rules (per annotation, in this order):
 * - records with `ignore: 1` are skipped;
 * - boxes with width or height below 1 pixel, or with `area` <= 0, are dropped, as are
 *   boxes that do not overlap the image (MMDetection drops the same boxes silently; here
 *   one warning line gives the counts);
 * - annotations of categories outside `classes` are left out;
 * - COCO xywh becomes xyxy = [x, y, x + w, y + h];
 * - crowd regions (`iscrowd: 1`) become ignored boxes, which training neither matches as
 *   positives nor counts as background.
 *
 * Labels are contiguous: label i is `classes[i]` when `classes` is given, otherwise the
 * i-th category in ascending id order (for the official files, 1..90 with gaps map to 0..79).
 *
 * In training (`testMode` false) images smaller than `minSize` pixels on their short side are
 * skipped, and with `filterEmptyGt`, so are images that keep no non-crowd box. MMDetection
 * 2.x keeps images whose annotations are all crowd or dropped; they contribute no positive.
 */
import { join } from 'node:path';

import type { TransformConfig } from '../config/component_types.ts';
import { checkOptionKeys } from '../config/config.ts';
import { DATASETS } from '../registry/index.ts';
import { ConfigError } from '../utils/errors.ts';
import { getLogger } from '../utils/logger.ts';
import { closestName } from '../utils/strings.ts';
import { readCocoFile, type CocoAnnotationRecord, type CocoImageRecord } from './coco_json.ts';
import { createSample, type AnnotationInfo, type Dataset, type Sample, type TransformContext } from './sample.ts';
import { buildPipeline, type Compose } from './transforms/index.ts';

const logger = getLogger('datasets');

export interface CocoDatasetOptions {
  /** Path of the COCO instance annotation file. */
  annFile: string;
  /** Folder that each image's `file_name` is relative to (default: the current directory). */
  imgPrefix?: string;
  /** Transform configs applied to each sample, in order (default: none). */
  pipeline?: TransformConfig[];
  /** Test mode keeps every image and does not need `annotations` in the file (default false). */
  testMode?: boolean;
  /** In training, skip images without a usable non-crowd box (default true). */
  filterEmptyGt?: boolean;
  /** Category names to use, in label order (default: all categories in ascending id order). */
  classes?: string[];
  /** In training, skip images whose shorter side is below this many pixels (default 32, as MMDetection). */
  minSize?: number;
}

declare module '../config/component_types.ts' {
  interface DatasetTypes {
    CocoDataset: CocoDatasetOptions;
  }
}

/** Counts of annotations that parsing left out, by reason. */
export interface DropCounts {
  ignoreFlag: number;
  tooSmall: number;
  nonPositiveArea: number;
  outsideImage: number;
  /** Of categories not in `classes`; expected when `classes` selects a subset, so never warned about. */
  otherCategory: number;
  /** Referring to an image id that `images` does not contain. */
}

/** Formats the warning line about dropped annotations, or returns undefined when none were dropped. */
export function describeDrops(counts: DropCounts): string | undefined {
  const parts: string[] = [];
  if (counts.tooSmall > 0) parts.push(`${counts.tooSmall} with width or height below 1 pixel`);
  if (counts.nonPositiveArea > 0) parts.push(`${counts.nonPositiveArea} with area 0 or less`);
  if (counts.outsideImage > 0) parts.push(`${counts.outsideImage} outside the image`);
  if (counts.ignoreFlag > 0) parts.push(`${counts.ignoreFlag} marked 'ignore'`);
  if (parts.length === 0) return undefined;
  const total = counts.tooSmall + counts.nonPositiveArea + counts.outsideImage + counts.ignoreFlag;
  return `dropped ${total} annotation${total === 1 ? '' : 's'}: ${parts.join(', ')}`;
}

type DropReason = Exclude<keyof DropCounts, 'otherCategory'>;

/** Returns why MMDetection's rules drop this annotation, or undefined to keep it. */
function dropReason(annotation: CocoAnnotationRecord, image: CocoImageRecord): DropReason | undefined {
  if (annotation.ignore) return 'ignoreFlag';
  const [x, y, w, h] = annotation.bboxXywh;
  if (w < 1 || h < 1) return 'tooSmall';
  if (annotation.area !== undefined && annotation.area <= 0) return 'nonPositiveArea';
  const overlapWidth = Math.max(0, Math.min(x + w, image.width) - Math.max(x, 0));
  const overlapHeight = Math.max(0, Math.min(y + h, image.height) - Math.max(y, 0));
  if (overlapWidth * overlapHeight === 0) return 'outsideImage';
  return undefined;
}

export class CocoDataset implements Dataset {
  readonly annFile: string;
  readonly imgPrefix: string;
  readonly testMode: boolean;
  /** Category names in label order. */
  readonly classes: readonly string[];
  /** COCO category id of each label. */
  readonly catIds: readonly number[];
  /** Counts of annotations left out while parsing. */
  readonly dropCounts: DropCounts;
  /** Images of the annotation file that this dataset skipped (training only). */
  readonly skippedImages: { noUsableBox: number; tooSmall: number };
  readonly pipelineConfigs: readonly TransformConfig[];

  private readonly catIdToLabelMap: Map<number, number>;
  private readonly images: CocoImageRecord[];
  private readonly annotations: Array<AnnotationInfo | undefined>;
  private readonly pipeline: Compose;

  constructor(options: CocoDatasetOptions) {
    checkOptionKeys('CocoDataset', options, [
      'annFile',
      'imgPrefix',
      'pipeline',
      'testMode',
      'filterEmptyGt',
      'classes',
      'minSize',
    ]);
    if (typeof options.annFile !== 'string' || options.annFile.length === 0) {
      throw new ConfigError(`CocoDataset: annFile must be the path of a COCO annotation file, got ${JSON.stringify(options.annFile)}`);
    }
    this.annFile = options.annFile;
    this.imgPrefix = options.imgPrefix ?? '';
    this.testMode = options.testMode ?? false;
    const filterEmptyGt = options.filterEmptyGt ?? true;
    const minSize = options.minSize ?? 32;
    this.pipelineConfigs = options.pipeline ?? [];
    this.pipeline = buildPipeline(this.pipelineConfigs, 'CocoDataset.pipeline');

    const coco = readCocoFile(this.annFile, { requireAnnotations: !this.testMode });

    const categories = [...coco.categories].sort((a, b) => a.id - b.id);
    let selected = categories;
    if (options.classes !== undefined) {
      const byName = new Map(categories.map((category) => [category.name, category]));
      selected = options.classes.map((name, index) => {
        const category = byName.get(name);
        if (category === undefined) {
          const closest = closestName(name, byName.keys());
          throw new ConfigError(
            `CocoDataset.classes[${index}]: '${name}' is not a category of ${this.annFile}` +
              (closest === undefined ? '' : ` (closest: '${closest}')`),
          );
        }
        return category;
      });
      if (new Set(options.classes).size !== options.classes.length) {
        throw new ConfigError(`CocoDataset.classes: names must be unique, got ${JSON.stringify(options.classes)}`);
      }
    }
    this.classes = selected.map((category) => category.name);
    this.catIds = selected.map((category) => category.id);
    this.catIdToLabelMap = new Map(this.catIds.map((id, label) => [id, label]));

    const parsed = this.parseAnnotations(coco.images, coco.annotations);
    this.dropCounts = parsed.counts;

    // Keep the file's image order, as pycocotools' getImgIds does.
    this.images = [];
    this.annotations = [];
    this.skippedImages = { noUsableBox: 0, tooSmall: 0 };
    for (const image of coco.images) {
      const info = parsed.byImage.get(image.id);
      if (!this.testMode) {
        if (Math.min(image.width, image.height) < minSize) {
          this.skippedImages.tooSmall += 1;
          continue;
        }
        if (filterEmptyGt && (info === undefined || info.labels.length === 0)) {
          this.skippedImages.noUsableBox += 1;
          continue;
        }
      }
      this.images.push(image);
      this.annotations.push(info ?? (coco.hasAnnotations ? emptyAnnotations() : undefined));
    }

    const dropLine = describeDrops(this.dropCounts);
    if (dropLine !== undefined) logger.warn(`${this.annFile}: ${dropLine}`);
    logger.info(
      `${this.annFile}: ${this.images.length} images, ${this.classes.length} classes` +
        (this.testMode
          ? ' (test mode)'
          : `; skipped ${this.skippedImages.noUsableBox} images without a usable box` +
            ` and ${this.skippedImages.tooSmall} smaller than ${minSize} px`),
    );
  }

  private parseAnnotations(
    images: readonly CocoImageRecord[],
    annotations: readonly CocoAnnotationRecord[],
  ): { byImage: Map<number, AnnotationInfo>; counts: DropCounts } {
    const counts: DropCounts = {
      ignoreFlag: 0,
      tooSmall: 0,
      nonPositiveArea: 0,
      outsideImage: 0,
      otherCategory: 0,
    };
    const imageById = new Map(images.map((image) => [image.id, image]));
    const keptByImage = new Map<number, { boxes: number[]; labels: number[]; ignored: number[] }>();
    for (const annotation of annotations) {
      // readCocoFile has checked that every annotation names an image of the file.
      const image = imageById.get(annotation.imageId)!;
      const reason = dropReason(annotation, image);
      if (reason !== undefined) {
        counts[reason] += 1;
        continue;
      }
      const label = this.catIdToLabelMap.get(annotation.categoryId);
      if (label === undefined) {
        counts.otherCategory += 1;
        continue;
      }
      let entry = keptByImage.get(image.id);
      if (entry === undefined) {
        entry = { boxes: [], labels: [], ignored: [] };
        keptByImage.set(image.id, entry);
      }
      const [x, y, w, h] = annotation.bboxXywh;
      if (annotation.iscrowd) {
        entry.ignored.push(x, y, x + w, y + h);
      } else {
        entry.boxes.push(x, y, x + w, y + h);
        entry.labels.push(label);
      }
    }
    const byImage = new Map<number, AnnotationInfo>();
    for (const [imageId, entry] of keptByImage) {
      byImage.set(imageId, {
        boxes: Float32Array.from(entry.boxes),
        labels: Int32Array.from(entry.labels),
        ignoredBoxes: Float32Array.from(entry.ignored),
      });
    }
    return { byImage, counts };
  }

  get length(): number {
    return this.images.length;
  }

  /** Returns the label of a COCO category id, or undefined for categories outside `classes`. */
  catIdToLabel(catId: number): number | undefined {
    return this.catIdToLabelMap.get(catId);
  }

  /** Returns the COCO category id of a label 0..K-1. */
  labelToCatId(label: number): number {
    const catId = this.catIds[label];
    if (catId === undefined) {
      throw new RangeError(`labelToCatId: label ${label} is outside 0..${this.catIds.length - 1}`);
    }
    return catId;
  }

  /** Returns the image record at `index`: id, file name and size from the annotation file. */
  imageInfo(index: number): Readonly<CocoImageRecord> {
    return this.checkedImage(index);
  }

  /** Parsed annotations of the image at `index`, or undefined when the file has none (test mode). */
  annotationInfo(index: number): Readonly<AnnotationInfo> | undefined {
    this.checkedImage(index);
    return this.annotations[index];
  }

  aspectRatioFlag(index: number): number {
    const image = this.checkedImage(index);
    return image.width / image.height > 1 ? 1 : 0;
  }

  prepareItem(index: number): Sample {
    const image = this.checkedImage(index);
    const sample = createSample(image.id, join(this.imgPrefix, image.fileName));
    sample.annotatedShape = [image.height, image.width];
    sample.annotationInfo = this.annotations[index];
    return sample;
  }

  async getItem(index: number, context: TransformContext): Promise<Sample> {
    return this.pipeline.apply(this.prepareItem(index), context);
  }

  private checkedImage(index: number): CocoImageRecord {
    const image = this.images[index];
    if (image === undefined) throw new RangeError(`CocoDataset: index ${index} is outside 0..${this.images.length - 1}`);
    return image;
  }
}

function emptyAnnotations(): AnnotationInfo {
  return { boxes: new Float32Array(0), labels: new Int32Array(0), ignoredBoxes: new Float32Array(0) };
}

DATASETS.register('CocoDataset', (options: CocoDatasetOptions) => new CocoDataset(options));
