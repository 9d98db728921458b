/**
 * Reading and validating COCO instance annotation files (`instances_*.json`).
 *
 * Only the fields that detection needs are checked and kept: `images` (id, file_name,
 * width, height), `annotations` (id, image_id, category_id, bbox, area, iscrowd, ignore) and
 * `categories` (id, name). Errors name the file, the record and the field, for example
 * "instances.json: annotations[12]: missing 'bbox'". Segmentations are not read.
 */
import { readJsonFile } from '../coco/io.ts';
import { DataError } from '../utils/errors.ts';

export interface CocoImageRecord {
  id: number;
  fileName: string;
  width: number;
  height: number;
}

export interface CocoAnnotationRecord {
  imageId: number;
  categoryId: number;
  /** COCO box: top-left x, top-left y, width, height, in pixels. */
  bboxXywh: [number, number, number, number];
  /** Segmentation area in pixels, when the record has one. */
  area: number | undefined;
  iscrowd: boolean;
  /** Non-standard `ignore` flag that some converted datasets set; MMDetection skips such records. */
  ignore: boolean;
}

export interface CocoCategoryRecord {
  id: number;
  name: string;
}

export interface CocoFile {
  images: CocoImageRecord[];
  /** Empty when the file has no `annotations` list (see `hasAnnotations`). */
  annotations: CocoAnnotationRecord[];
  categories: CocoCategoryRecord[];
  /** Whether the file has an `annotations` list (image-info files do not). */
  hasAnnotations: boolean;
}

export interface ReadCocoOptions {
  /**
   * Whether a file without `annotations` is an error (default true). Image-info files such
   * as COCO's test-dev list have only `images` and `categories`.
   */
  requireAnnotations?: boolean;
}

function describeValue(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '...' : value)}`;
  return `${typeof value} ${String(value)}`;
}

/** Field readers that throw DataError naming `source`, the record path and the field. */
class RecordReader {
  constructor(
    private readonly source: string,
    private readonly path: string,
    private readonly record: Record<string, unknown>,
  ) {}

  private fail(field: string, expected: string, value: unknown): never {
    throw new DataError(`${this.source}: ${this.path}.${field}: expected ${expected}, got ${describeValue(value)}`);
  }

  private required(field: string): unknown {
    if (!(field in this.record)) throw new DataError(`${this.source}: ${this.path}: missing '${field}'`);
    return this.record[field];
  }

  integer(field: string): number {
    const value = this.required(field);
    if (typeof value !== 'number' || !Number.isInteger(value)) this.fail(field, 'an integer', value);
    return value;
  }

  positiveNumber(field: string): number {
    const value = this.required(field);
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) this.fail(field, 'a positive number', value);
    return value;
  }

  string(field: string): string {
    const value = this.required(field);
    if (typeof value !== 'string' || value.length === 0) this.fail(field, 'a non-empty string', value);
    return value;
  }

  optionalNumber(field: string): number | undefined {
    const value = this.record[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(field, 'a number', value);
    return value;
  }

  /** Reads a 0/1 or boolean flag; a missing field means false. */
  flag(field: string): boolean {
    const value = this.record[field];
    if (value === undefined || value === null) return false;
    if (value === 0 || value === 1 || typeof value === 'boolean') return value === 1 || value === true;
    return this.fail(field, '0, 1, true or false', value);
  }

  bboxXywh(field: string): [number, number, number, number] {
    const value = this.required(field);
    if (!Array.isArray(value) || value.length !== 4 || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      this.fail(field, '[x, y, width, height] with 4 finite numbers', value);
    }
    return [value[0], value[1], value[2], value[3]];
  }
}

function readRecords<T>(
  source: string,
  json: Record<string, unknown>,
  key: string,
  parse: (reader: RecordReader) => T,
): T[] {
  const list = json[key];
  if (!Array.isArray(list)) {
    throw new DataError(`${source}: '${key}' must be an array, got ${describeValue(list)}`);
  }
  return list.map((record, index) => {
    const path = `${key}[${index}]`;
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
      throw new DataError(`${source}: ${path}: expected an object, got ${describeValue(record)}`);
    }
    return parse(new RecordReader(source, path, record as Record<string, unknown>));
  });
}

function checkUniqueIds(source: string, key: string, records: ReadonlyArray<{ id: number }>): void {
  const seen = new Map<number, number>();
  records.forEach((record, index) => {
    const first = seen.get(record.id);
    if (first !== undefined) {
      throw new DataError(`${source}: ${key}[${index}].id: ${record.id} is already used by ${key}[${first}]`);
    }
    seen.set(record.id, index);
  });
}

/** Validates parsed JSON as a COCO instance file; `source` names it in errors. */
export function parseCocoJson(json: unknown, source: string, options: ReadCocoOptions = {}): CocoFile {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new DataError(`${source}: expected a COCO JSON object at the top level, got ${describeValue(json)}`);
  }
  const top = json as Record<string, unknown>;
  const requireAnnotations = options.requireAnnotations ?? true;
  for (const key of ['images', 'annotations', 'categories']) {
    if (key === 'annotations' && !requireAnnotations) continue;
    if (!(key in top)) throw new DataError(`${source}: missing '${key}' (not a COCO instance annotation file?)`);
  }

  const images = readRecords(source, top, 'images', (r) => ({
    id: r.integer('id'),
    fileName: r.string('file_name'),
    width: r.positiveNumber('width'),
    height: r.positiveNumber('height'),
  }));
  checkUniqueIds(source, 'images', images);

  const categories = readRecords(source, top, 'categories', (r) => ({ id: r.integer('id'), name: r.string('name') }));
  checkUniqueIds(source, 'categories', categories);
  const categoryIds = new Set(categories.map((category) => category.id));

  const annotations =
    'annotations' in top
      ? readRecords(source, top, 'annotations', (r) => ({
          imageId: r.integer('image_id'),
          categoryId: r.integer('category_id'),
          bboxXywh: r.bboxXywh('bbox'),
          area: r.optionalNumber('area'),
          iscrowd: r.flag('iscrowd'),
          ignore: r.flag('ignore'),
        }))
      : [];
  const imageIds = new Set(images.map((image) => image.id));
  annotations.forEach((annotation, index) => {
    // pycocotools would drop such an annotation from evaluation silently; the file is broken.
    if (!imageIds.has(annotation.imageId)) {
      throw new DataError(`${source}: annotations[${index}].image_id: ${annotation.imageId} is not the id of any entry in 'images'`);
    }
    if (!categoryIds.has(annotation.categoryId)) {
      throw new DataError(
        `${source}: annotations[${index}].category_id: ${annotation.categoryId} is not the id of any entry in 'categories'`,
      );
    }
  });

  return { images, annotations, categories, hasAnnotations: 'annotations' in top };
}

/**
 * Reads and validates a COCO instance file, plain or gzip-compressed. Files above 256 MiB of
 * text are parsed in chunks, so files larger than V8's string limit (about 512 MiB) load too.
 * Throws DataError naming the file when it is missing, not JSON or not COCO.
 */
export function readCocoFile(path: string, options: ReadCocoOptions = {}): CocoFile {
  let json: unknown;
  try {
    json = readJsonFile(path);
  } catch (error) {
    if (error instanceof DataError) throw new DataError(`annotation file ${error.message}`, { cause: error });
    throw error;
  }
  return parseCocoJson(json, path, options);
}
