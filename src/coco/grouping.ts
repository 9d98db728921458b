/**
 * Selection of the annotations that COCOeval evaluates, grouped by cell: one cell per
 * (category, image) pair, or per image when categories are not used. Within a cell the
 * annotations come in pycocotools' order (its `_gts[imgId, catId]` lists): file order, and
 * with useCats false, category by category in params.catIds order.
 */
import { DataError } from '../utils/errors.ts';
import { crowdFlag, type COCO } from './coco.ts';
import type { CocoAnnotation } from './types.ts';

export interface CellAnnotations {
  /** The selected annotations, ordered by cell. */
  annotations: CocoAnnotation[];
  /** The annotations of cell c are annotations[cellStart[c] .. cellStart[c + 1]). */
  cellStart: Int32Array;
  /** Fields of the selected annotations, read once because touching 10^5 scattered objects is what costs. */
  ids: Float64Array;
  /** `area`, NaN where it is missing or not a number. */
  areas: Float64Array;
  /** `score`, NaN where it is missing or not a number. */
  scores: Float64Array;
  /** 1 where `iscrowd` is truthy. */
  crowd: Uint8Array;
  /** With readBoxes, `bbox` as [x, y, w, h] per annotation, NaN where it is not 4 finite numbers. */
  boxes: Float64Array | undefined;
}

/** Returns a stable permutation that sorts `keys` (integers in [0, numKeys)) ascending, and the start of each key. */
function countingSort(keys: Int32Array, numKeys: number, input?: Int32Array): { order: Int32Array; start: Int32Array } {
  const count = keys.length;
  const start = new Int32Array(numKeys + 1);
  for (let j = 0; j < count; j++) start[keys[j]! + 1]++;
  for (let key = 0; key < numKeys; key++) start[key + 1] += start[key]!;
  const next = start.slice(0, numKeys);
  const order = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const j = input === undefined ? n : input[n]!;
    order[next[keys[j]!]!++] = j;
  }
  return { order, start };
}

/** A growable Int32Array; `capacity` sizes it up front so that the usual case never copies. */
class IntList {
  values: Int32Array;
  length = 0;

  constructor(capacity: number) {
    this.values = new Int32Array(Math.max(16, capacity));
  }

  push(value: number): void {
    if (this.length === this.values.length) {
      const grown = new Int32Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = value;
  }

  toArray(): Int32Array {
    return this.values.subarray(0, this.length);
  }
}

/**
 * Groups the annotations of `coco` on the images `imgIds` by cell. With `useCats`, only
 * categories in `catIds` count and cell k * imgIds.length + i contains category catIds[k] on image
 * imgIds[i]. Without it, cell i contains every annotation of image i whose category is in catIds,
 * once per occurrence of the category in catIds, as pycocotools' list comprehension does.
 * Throws DataError when an annotation id is used twice, because pycocotools looks annotations
 * up by id and would silently evaluate one object twice.
 */
export function groupByCell(
  coco: COCO,
  imgIds: readonly number[],
  catIds: readonly number[],
  useCats: boolean,
  role: string,
  readBoxes = false,
): CellAnnotations {
  const numImages = imgIds.length;
  const numCells = useCats ? catIds.length * numImages : numImages;
  const positionsOf = categoryPositionLookup(catIds);

  // One pass over the annotation objects reads every field that evaluation needs, because
  // with 10^5 and more annotations scattered over the heap the memory reads are what cost.
  // Each annotation is selected at most once per category position, so with unique catIds the
  // number of annotations bounds the lists.
  const capacity = coco.dataset.annotations?.length ?? 0;
  const selected: CocoAnnotation[] = [];
  const cells = new IntList(capacity);
  const categoryPositions = new IntList(capacity);
  const ids = new NumberList(capacity);
  const areas = new NumberList(capacity);
  const scores = new NumberList(capacity);
  const crowd = new IntList(capacity);
  const boxes = readBoxes ? new NumberList(4 * capacity) : undefined;
  // A repeated id shows up as fewer index entries than annotations; only then is each checked.
  const checkIds = coco.anns.size !== (coco.dataset.annotations?.length ?? 0);
  for (let i = 0; i < numImages; i++) {
    const annotations = coco.imgToAnns.get(imgIds[i]!);
    if (annotations === undefined) continue;
    for (const annotation of annotations) {
      const found = positionsOf(annotation.category_id);
      if (found === undefined) continue;
      if (checkIds && coco.anns.get(annotation.id) !== annotation) {
        throw new DataError(`${coco.source}: ${role} annotation id ${annotation.id} is used more than once`);
      }
      const id = annotation.id;
      const area = toNumber(annotation.area);
      const score = toNumber(annotation.score);
      const isCrowd = crowdFlag(annotation) !== 0 ? 1 : 0;
      for (let f = 0; f < found.length; f++) {
        const k = found[f]!;
        selected.push(annotation);
        cells.push(useCats ? k * numImages + i : i);
        categoryPositions.push(k);
        ids.push(id);
        areas.push(area);
        scores.push(score);
        crowd.push(isCrowd);
        if (boxes !== undefined) pushBox(boxes, annotation.bbox);
      }
    }
  }

  // Annotations were collected image by image in file order. Without categories, a cell (an
  // image) must list them category by category, so sort by category position first.
  const byPosition = useCats ? undefined : countingSort(categoryPositions.toArray(), catIds.length).order;
  const { order, start } = countingSort(cells.toArray(), numCells, byPosition);
  const count = order.length;
  const result: CellAnnotations = {
    annotations: new Array<CocoAnnotation>(count),
    cellStart: start,
    ids: new Float64Array(count),
    areas: new Float64Array(count),
    scores: new Float64Array(count),
    crowd: new Uint8Array(count),
    boxes: boxes === undefined ? undefined : new Float64Array(4 * count),
  };
  for (let n = 0; n < count; n++) {
    const j = order[n]!;
    result.annotations[n] = selected[j]!;
    result.ids[n] = ids.values[j]!;
    result.areas[n] = areas.values[j]!;
    result.scores[n] = scores.values[j]!;
    result.crowd[n] = crowd.values[j]!;
    if (boxes !== undefined) for (let k = 0; k < 4; k++) result.boxes![4 * n + k] = boxes.values[4 * j + k]!;
  }
  return result;
}

/** Appends a bbox's 4 numbers, or 4 NaN when it is not 4 finite numbers. */
function pushBox(list: NumberList, bbox: unknown): void {
  let valid = Array.isArray(bbox) && bbox.length === 4;
  for (let k = 0; k < 4 && valid; k++) valid = Number.isFinite((bbox as unknown[])[k]);
  for (let k = 0; k < 4; k++) list.push(valid ? ((bbox as number[])[k] as number) : NaN);
}

/** Largest category id looked up in a dense table rather than a Map. */
const MAX_DENSE_CATEGORY_ID = 1 << 16;

/**
 * Returns a function from category id to its positions in catIds (undefined for other ids).
 * Small non-negative integer ids, as COCO has, use an array, which is faster than a Map.
 */
function categoryPositionLookup(catIds: readonly number[]): (categoryId: number) => readonly number[] | undefined {
  const positions = new Map<number, number[]>();
  catIds.forEach((catId, k) => {
    const list = positions.get(catId);
    if (list === undefined) positions.set(catId, [k]);
    else list.push(k);
  });
  const dense = catIds.every((id) => Number.isInteger(id) && id >= 0 && id < MAX_DENSE_CATEGORY_ID);
  if (!dense) return (categoryId) => positions.get(categoryId);

  const table = new Array<readonly number[] | undefined>(Math.max(0, ...catIds) + 1).fill(undefined);
  for (const [catId, list] of positions) table[catId] = list;
  return (categoryId) => (Number.isInteger(categoryId) && categoryId >= 0 ? table[categoryId] : undefined);
}

class NumberList {
  values: Float64Array;
  length = 0;

  constructor(capacity: number) {
    this.values = new Float64Array(Math.max(16, capacity));
  }

  push(value: number): void {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = value;
  }
}

function toNumber(value: unknown): number {
  return typeof value === 'number' ? value : NaN;
}
