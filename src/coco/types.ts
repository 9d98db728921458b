/**
 * JSON types of COCO files: the ground-truth dataset (instances format) and the results list
 * that a detector writes. Field names follow the COCO format, so they are snake_case.
 * Every record may carry extra fields, which are kept as they are.
 */

/** Polygons of one object: each polygon is a flat list [x1, y1, x2, y2, ...] in pixels. */
export type CocoPolygons = number[][];

/**
 * Run-length encoding of a binary mask, column-major. `counts` is a list of run lengths
 * (uncompressed, as COCO stores crowd regions) or pycocotools' compressed string.
 */
export interface CocoRle {
  size: [height: number, width: number];
  counts: string | number[];
}

export type CocoSegmentation = CocoPolygons | CocoRle;

/** Box as COCO stores it: [x, y, width, height] in pixels, (x, y) the top-left corner. */
export type CocoBboxXywh = [x: number, y: number, width: number, height: number];

export interface CocoImage {
  id: number;
  width?: number;
  height?: number;
  file_name?: string;
  [field: string]: unknown;
}

export interface CocoCategory {
  id: number;
  name?: string;
  supercategory?: string;
  [field: string]: unknown;
}

export interface CocoAnnotation {
  id: number;
  image_id: number;
  category_id: number;
  bbox?: number[];
  /** Object area in square pixels: the mask area for ground truth, w * h for box results. */
  area?: number;
  /** 1 for a crowd region. A missing value counts as 0. */
  iscrowd?: number | boolean;
  segmentation?: CocoSegmentation;
  /** Detection confidence, present on annotations made from results. */
  score?: number;
  [field: string]: unknown;
}

/** A COCO annotation file in the instances format. */
export interface CocoDataset {
  info?: unknown;
  licenses?: unknown[];
  images?: CocoImage[];
  annotations?: CocoAnnotation[];
  categories?: CocoCategory[];
  [field: string]: unknown;
}

/** One detection in a COCO results file. */
export interface CocoResult {
  image_id: number;
  category_id: number;
  score: number;
  bbox?: number[];
  segmentation?: CocoSegmentation;
  [field: string]: unknown;
}

/** A box detection, the entry that `bbox` evaluation reads. */
export interface CocoBboxResult extends CocoResult {
  bbox: number[];
}
