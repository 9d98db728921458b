/**
 * COCO: an index over a COCO annotation file with pycocotools' lookup API (getAnnIds,
 * getCatIds, getImgIds, loadAnns, loadCats, loadImgs, loadRes, annToRLE, annToMask). The index stores whole
 * annotation records and assumes no annotation kind, so boxes, masks and keypoints share it.
 */
import { DataError } from '../utils/errors.ts';
import { readJsonFile, readJsonFileAsync } from './io.ts';
import { fromRle, type BinaryMask } from './mask.ts';
import { resultsToAnnotations, type MaskBoxCache } from './results.ts';
import { rleDecode } from './rle.ts';
import { annotationToRle } from './segmentation.ts';
import type { CocoAnnotation, CocoCategory, CocoDataset, CocoImage, CocoRle } from './types.ts';
import { describeValue, isFiniteNumber } from './values.ts';

/** Receiver of progress messages and warnings. The Logger from rladet's `getLogger(scope)` fits. */
export interface CocoLogger {
  info(message: string): void;
  warn(message: string): void;
}

export interface CocoOptions {
  /** Logger for the loading messages that pycocotools prints. Without it nothing is logged. */
  logger?: CocoLogger;
  /** Name of the data in error messages, such as a file path. Defaults to the path, or 'dataset' for an object. */
  source?: string;
}

export interface GetAnnIdsFilter {
  imgIds?: number | readonly number[];
  catIds?: number | readonly number[];
  /** [min, max] area, both bounds exclusive as in pycocotools' getAnnIds. */
  areaRng?: readonly number[];
  /** Keeps only annotations whose iscrowd equals this (a missing iscrowd counts as 0). */
  iscrowd?: boolean | number | null;
}

export interface GetCatIdsFilter {
  catNms?: string | readonly string[];
  supNms?: string | readonly string[];
  catIds?: number | readonly number[];
}

export interface GetImgIdsFilter {
  imgIds?: number | readonly number[];
  catIds?: number | readonly number[];
}

function toList<T>(value: T | readonly T[] | undefined): readonly T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? (value as readonly T[]) : [value as T];
}

/** Returns the annotation's iscrowd as a number, 0 when it is missing. */
export function crowdFlag(annotation: CocoAnnotation): number {
  return Number(annotation.iscrowd ?? 0);
}

export class COCO {
  dataset: CocoDataset = {};
  anns = new Map<number, CocoAnnotation>();
  imgs = new Map<number, CocoImage>();
  cats = new Map<number, CocoCategory>();
  /** Annotations of each image id, in file order. */
  imgToAnns = new Map<number, CocoAnnotation[]>();
  /** Image id of every annotation of each category id, in file order and with repeats, as pycocotools keeps it. */
  catToImgs = new Map<number, number[]>();
  readonly source: string;
  /** Mask boxes that loadRes computed for mask results; see MaskBoxCache. */
  maskBoxes: MaskBoxCache | undefined;
  private readonly logger: CocoLogger | undefined;
  /**
   * True for the index that loadRes builds. Its annotations are detection results, which
   * resultsToAnnotations has validated, and createIndex skips the ground-truth checks because
   * they would reject results that pycocotools evaluates, such as boxes of negative width.
   */
  private isResultIndex = false;

  /** Builds the index from a dataset object, from a `.json` / `.json.gz` path, or empty. */
  constructor(dataset?: CocoDataset | string, options: CocoOptions = {}) {
    this.logger = options.logger;
    this.source = options.source ?? (typeof dataset === 'string' ? dataset : 'dataset');
    if (dataset === undefined) return;

    if (typeof dataset === 'string') {
      this.logger?.info(`loading annotations from ${dataset}`);
      const started = performance.now();
      const parsed = readJsonFile(dataset);
      this.logger?.info(`done (t=${((performance.now() - started) / 1000).toFixed(2)}s)`);
      this.dataset = parsed as CocoDataset;
    } else {
      this.dataset = dataset;
    }
    this.createIndex();
  }

  static fromFile(path: string, options: CocoOptions = {}): COCO {
    return new COCO(path, options);
  }

  /**
   * Loads and indexes a `.json` / `.json.gz` annotation file as a stream, so that files of
   * hundreds of megabytes load without their text in memory (see readJsonFileAsync).
   */
  static async load(path: string, options: CocoOptions = {}): Promise<COCO> {
    options.logger?.info(`loading annotations from ${path}`);
    const started = performance.now();
    const dataset = await readJsonFileAsync(path);
    options.logger?.info(`done (t=${((performance.now() - started) / 1000).toFixed(2)}s)`);
    return new COCO(dataset as CocoDataset, { source: path, ...options });
  }

  /**
   * Validates the dataset and (re)builds anns, imgs, cats, imgToAnns and catToImgs. Records
   * need numeric ids. Unless the index contains loadRes results, which loadRes has validated, an
   * annotation must also refer to an image in 'images' and a category in 'categories' (each
   * checked only when that list is present, as pycocotools loads files without them), and a
   * bbox, where present, must be 4 finite numbers with width and height >= 0.
   */
  createIndex(): void {
    validateDataset(this.dataset, this.source);
    const anns = new Map<number, CocoAnnotation>();
    const imgs = new Map<number, CocoImage>();
    const cats = new Map<number, CocoCategory>();
    const imgToAnns = new Map<number, CocoAnnotation[]>();
    const catToImgs = new Map<number, number[]>();

    for (const image of this.dataset.images ?? []) imgs.set(image.id, image);
    for (const category of this.dataset.categories ?? []) cats.set(category.id, category);
    if (!this.isResultIndex) {
      checkGroundTruthAnnotations(this.dataset, imgs, cats, this.source);
    }
    for (const annotation of this.dataset.annotations ?? []) {
      pushToMap(imgToAnns, annotation.image_id, annotation);
      anns.set(annotation.id, annotation);
    }
    if (this.dataset.annotations !== undefined && this.dataset.categories !== undefined) {
      for (const annotation of this.dataset.annotations) {
        pushToMap(catToImgs, annotation.category_id, annotation.image_id);
      }
    }

    this.anns = anns;
    this.imgs = imgs;
    this.cats = cats;
    this.imgToAnns = imgToAnns;
    this.catToImgs = catToImgs;
  }

  /**
   * Returns the ids of the annotations that pass every given filter, in file order
   * (grouped by image when imgIds is given). An empty filter keeps everything.
   */
  getAnnIds(filter: GetAnnIdsFilter = {}): number[] {
    const imgIds = toList(filter.imgIds);
    const catIds = toList(filter.catIds);
    const areaRng = filter.areaRng ?? [];

    let anns: readonly CocoAnnotation[];
    if (imgIds.length > 0) {
      anns = imgIds.flatMap((imgId) => this.imgToAnns.get(imgId) ?? []);
    } else {
      anns = this.dataset.annotations ?? [];
    }
    if (catIds.length > 0) {
      const requested = new Set(catIds);
      anns = anns.filter((annotation) => requested.has(annotation.category_id));
    }
    if (areaRng.length > 0) {
      const [low, high] = [areaRng[0]!, areaRng[1]!];
      anns = anns.filter((annotation) => annotation.area !== undefined && annotation.area > low && annotation.area < high);
    }
    if (filter.iscrowd !== undefined && filter.iscrowd !== null) {
      const crowd = Number(filter.iscrowd);
      anns = anns.filter((annotation) => crowdFlag(annotation) === crowd);
    }
    return anns.map((annotation) => annotation.id);
  }

  /** Returns the ids of the categories that pass every given filter, in file order. */
  getCatIds(filter: GetCatIdsFilter = {}): number[] {
    const catNms = toList(filter.catNms);
    const supNms = toList(filter.supNms);
    const catIds = toList(filter.catIds);

    let cats: readonly CocoCategory[] = this.dataset.categories ?? [];
    if (catNms.length > 0) cats = cats.filter((category) => catNms.includes(category.name as string));
    if (supNms.length > 0) cats = cats.filter((category) => supNms.includes(category.supercategory as string));
    if (catIds.length > 0) cats = cats.filter((category) => catIds.includes(category.id));
    return cats.map((category) => category.id);
  }

  /**
   * Returns the image ids that are in `imgIds` (when given) and contain an annotation of every
   * category in `catIds`. Without filters the ids come in file order. With filters they are
   * sorted ascending, because pycocotools returns a set whose order is unspecified. As in
   * pycocotools, imgIds without catIds come back unchecked against the dataset.
   */
  getImgIds(filter: GetImgIdsFilter = {}): number[] {
    const imgIds = toList(filter.imgIds);
    const catIds = toList(filter.catIds);
    if (imgIds.length === 0 && catIds.length === 0) return [...this.imgs.keys()];

    let ids = new Set(imgIds);
    catIds.forEach((catId, index) => {
      const withCategory = new Set(this.catToImgs.get(catId) ?? []);
      if (index === 0 && ids.size === 0) {
        ids = withCategory;
      } else {
        ids = new Set([...ids].filter((id) => withCategory.has(id)));
      }
    });
    return [...ids].sort((a, b) => a - b);
  }

  loadAnns(ids: number | readonly number[]): CocoAnnotation[] {
    return toList(ids).map((id) => lookup(this.anns, id, 'annotation', this.source));
  }

  loadCats(ids: number | readonly number[]): CocoCategory[] {
    return toList(ids).map((id) => lookup(this.cats, id, 'category', this.source));
  }

  loadImgs(ids: number | readonly number[]): CocoImage[] {
    return toList(ids).map((id) => lookup(this.imgs, id, 'image', this.source));
  }

  /**
   * Builds a COCO index of detection results on this ground truth, as pycocotools' loadRes
   * does. Each result becomes an annotation with id 1..n in input order and iscrowd 0. Box
   * results get area w * h and, without a segmentation, their box as a polygon. Mask results
   * (RLE segmentation, no box in the first result) get the mask's area and, without a box, its
   * tight box. The index shares this dataset's images and copies its categories. The results
   * are not modified. `options.source` names the results in error messages (default: the
   * path, or 'results'). Throws DataError when this dataset has no 'images' or 'categories'
   * list, naming the result index and field of an invalid result, or listing the image ids
   * that are not in this dataset.
   */
  loadRes(results: string | readonly unknown[], options: { source?: string } = {}): COCO {
    const source = options.source ?? (typeof results === 'string' ? results : 'results');
    requireDatasetLists(this, ['images', 'categories']);
    this.logger?.info('loading and preparing results');
    const started = performance.now();
    const records = typeof results === 'string' ? readJsonFile(results) : results;
    const { annotations, maskBoxes } = resultsToAnnotations(records, this, source);

    const dataset: CocoDataset = {
      images: [...(this.dataset.images ?? [])],
      categories: structuredClone(this.dataset.categories ?? []),
      annotations,
    };
    const res = new COCO(undefined, { source, ...(this.logger !== undefined ? { logger: this.logger } : {}) });
    res.dataset = dataset;
    res.isResultIndex = true;
    res.createIndex();
    res.maskBoxes = maskBoxes;
    this.logger?.info(`done (t=${((performance.now() - started) / 1000).toFixed(2)}s)`);
    return res;
  }

  /**
   * Converts an annotation's segmentation to a compressed RLE, as pycocotools' annToRLE:
   * polygons are rasterised at the image's height and width and merged, uncompressed counts
   * are compressed, and a compressed RLE is returned as it is.
   */
  annToRLE(annotation: CocoAnnotation): CocoRle {
    if (typeof annotation.segmentation === 'object' && !Array.isArray(annotation.segmentation)) {
      if (typeof annotation.segmentation?.counts === 'string') return annotation.segmentation;
    }
    return fromRle(annotationToRle(annotation, this));
  }

  /** Decodes an annotation's segmentation into a row-major binary mask (pycocotools' annToMask). */
  annToMask(annotation: CocoAnnotation): BinaryMask {
    const rle = annotationToRle(annotation, this);
    return { height: rle.height, width: rle.width, data: rleDecode(rle) };
  }
}

function pushToMap<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function lookup<T>(map: Map<number, T>, id: number, kind: string, source: string): T {
  const value = map.get(id);
  if (value === undefined) throw new DataError(`${source}: ${kind} id ${describeValue(id)} not found`);
  return value;
}

type DatasetList = 'images' | 'annotations' | 'categories';

/** Text after "missing 'list'" in the error for a dataset without that list. */
const MISSING_LIST_REASONS: Record<DatasetList, string> = {
  images: ' (a COCO instances file lists its images)',
  categories: ' (a COCO instances file lists its categories)',
  annotations:
    ', so the ground truth has no annotations to evaluate against. Evaluate against an instances file, ' +
    'because image-info files such as image_info_test2017.json list no annotations.',
};

/**
 * Throws DataError naming the first of `lists` that the dataset of `coco` lacks. In
 * pycocotools (cocodataset/cocoapi, PythonAPI/pycocotools/coco.py) loadRes raises KeyError
 * without 'images' or 'categories', and COCOeval without 'annotations' reports -1 for
 * every number.
 */
export function requireDatasetLists(coco: COCO, lists: readonly DatasetList[]): void {
  for (const list of lists) {
    if (coco.dataset[list] === undefined) {
      throw new DataError(`${coco.source}: missing '${list}'${MISSING_LIST_REASONS[list]}`);
    }
  }
}

const REQUIRED_ID_FIELDS = {
  images: ['id'],
  annotations: ['id', 'image_id', 'category_id'],
  categories: ['id'],
} as const;

/** Checks that the dataset is an object whose images, annotations and categories carry numeric ids. */
function validateDataset(dataset: unknown, source: string): asserts dataset is CocoDataset {
  if (typeof dataset !== 'object' || dataset === null || Array.isArray(dataset)) {
    throw new DataError(`${source}: expected a COCO dataset object, found ${describeValue(dataset)}`);
  }
  const record = dataset as Record<string, unknown>;
  for (const [key, fields] of Object.entries(REQUIRED_ID_FIELDS)) {
    const list = record[key];
    if (list === undefined) continue;
    if (!Array.isArray(list)) {
      throw new DataError(`${source}: '${key}' must be an array, found ${describeValue(list)}`);
    }
    for (let index = 0; index < list.length; index++) {
      const entry: unknown = list[index];
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
        throw new DataError(`${source}: ${key}[${index}]: expected an object, found ${describeValue(entry)}`);
      }
      for (const field of fields) {
        const value = (entry as Record<string, unknown>)[field];
        if (typeof value !== 'number' || !Number.isFinite(value)) {
          throw new DataError(`${source}: ${key}[${index}].${field}: expected a number, found ${describeValue(value)}`);
        }
      }
    }
  }
}

/**
 * Checks each ground-truth annotation's references and box, so that an annotation that
 * evaluation would silently drop, or score with a box of negative size, is reported at load
 * time. `imgs` and `cats` are the indexed 'images' and 'categories'. A reference is checked
 * only when its list is present in the dataset.
 */
function checkGroundTruthAnnotations(
  dataset: CocoDataset,
  imgs: ReadonlyMap<number, CocoImage>,
  cats: ReadonlyMap<number, CocoCategory>,
  source: string,
): void {
  const annotations = dataset.annotations ?? [];
  const checkImages = dataset.images !== undefined;
  const checkCategories = dataset.categories !== undefined;
  for (let index = 0; index < annotations.length; index++) {
    const annotation = annotations[index]!;
    const where = `${source}: annotations[${index}] (id ${annotation.id})`;
    if (checkImages && !imgs.has(annotation.image_id)) {
      throw new DataError(`${where}.image_id: ${annotation.image_id} is not an image id in 'images'`);
    }
    if (checkCategories && !cats.has(annotation.category_id)) {
      throw new DataError(`${where}.category_id: ${annotation.category_id} is not a category id in 'categories'`);
    }
    const bbox: unknown = annotation.bbox;
    if (bbox !== undefined && !isValidBox(bbox)) {
      throw new DataError(
        `${where}.bbox: expected 4 finite numbers [x, y, width, height] with width and height >= 0, ` +
          `found ${describeValue(bbox)}`,
      );
    }
  }
}

function isValidBox(bbox: unknown): boolean {
  if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every(isFiniteNumber)) return false;
  return bbox[2] >= 0 && bbox[3] >= 0;
}
