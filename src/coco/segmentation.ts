/**
 * Conversion of annotation segmentations (polygons, uncompressed or compressed RLE) to RLEs,
 * as pycocotools' COCO.annToRLE does, and the mask IoU computer for `segm` evaluation.
 */
import { DataError } from '../utils/errors.ts';
import type { COCO } from './coco.ts';
import { registerIouComputer, type IouComputer } from './iou.ts';
import { readRleObject, toRle } from './mask.ts';
import { maskPairIou, PackedRles } from './packed_rle.ts';
import { boxIouMatrix, checkPolygon, isValidPolygon, place, rleFrPoly, rleMerge, Subscript, type Rle, type Where } from './rle.ts';
import type { CocoAnnotation, CocoRle } from './types.ts';
import { describeValue } from './values.ts';

/**
 * Converts a segmentation to one RLE: the union of its polygons (rasterised at the image size
 * `height` x `width`), or the RLE it contains, whose own size is used. `where` names the
 * segmentation in error messages.
 *
 * Unlike pycocotools, a polygon list whose first polygon has 4 numbers is rasterised as
 * polygons (pycocotools takes it for boxes and fails), and an empty list gives an empty mask.
 */
export function segmentationToRle(
  segmentation: unknown,
  height: number | undefined,
  width: number | undefined,
  where: Where,
): Rle {
  if (!Array.isArray(segmentation)) return toRle(segmentation, where);

  if (
    typeof height !== 'number' ||
    typeof width !== 'number' ||
    !Number.isInteger(height) ||
    !Number.isInteger(width) ||
    height <= 0 ||
    width <= 0
  ) {
    throw new DataError(
      `${place(where)}: polygons need the image's height and width as positive integers, found ` +
        `height ${describeValue(height)} and width ${describeValue(width)}`,
    );
  }
  if (segmentation.length === 0) return { height, width, counts: Uint32Array.of(height * width) };
  const parts = segmentation.map((polygon: unknown, i) => {
    checkPolygon(polygon, new Subscript(where, i));
    return rleFrPoly(polygon, height, width);
  });
  return rleMerge(parts, false, where);
}

/** An annotation as error messages name it: "gt.json: ground truth annotation 7 (image 42)". */
export class AnnotationLocation {
  constructor(
    public coco: COCO,
    public annotation: CocoAnnotation,
    public role = '',
  ) {}

  toString(): string {
    const prefix = this.role === '' ? '' : `${this.role} `;
    return `${this.coco.source}: ${prefix}annotation ${this.annotation.id} (image ${this.annotation.image_id})`;
  }
}

/** Converts an annotation's segmentation to an RLE, reading polygon sizes from its image in `coco`. */
export function annotationToRle(annotation: CocoAnnotation, coco: COCO, role = ''): Rle {
  const where = new Subscript(new AnnotationLocation(coco, annotation, role), 'segmentation');
  if (annotation.segmentation === undefined) {
    throw new DataError(`${place(where)}: missing; mask evaluation needs polygons or an RLE`);
  }
  const segmentation = annotation.segmentation;
  if (!Array.isArray(segmentation)) return toRle(segmentation, where);
  const image = coco.imgs.get(annotation.image_id);
  if (image === undefined) {
    throw new DataError(`${place(where)}: image id ${annotation.image_id} is not in ${coco.source}, so its size is unknown`);
  }
  return segmentationToRle(segmentation, image.height, image.width, where);
}

/**
 * Locations reused by addAnnotation: error messages are built from them only when a check
 * fails, which throws at once, so one mutable instance serves every annotation.
 */
const currentAnnotation = new AnnotationLocation(undefined as unknown as COCO, undefined as unknown as CocoAnnotation);
const currentSegmentation = new Subscript(currentAnnotation, 'segmentation');
const currentCounts = new Subscript(currentSegmentation, 'counts');

/**
 * Adds an annotation's mask to `pack`, decoding compressed strings straight into its buffer.
 * `knownBoxes` (at knownOffset) may give the mask's box, found earlier.
 */
function addAnnotation(
  pack: PackedRles,
  annotation: CocoAnnotation,
  coco: COCO,
  role: string,
  knownBoxes?: Float64Array,
  knownOffset = 0,
): void {
  const segmentation = annotation.segmentation;
  if (typeof segmentation === 'object' && segmentation !== null && !Array.isArray(segmentation)) {
    currentAnnotation.coco = coco;
    currentAnnotation.annotation = annotation;
    currentAnnotation.role = role;
    const { height, width, counts } = readRleObject(segmentation, currentSegmentation);
    if (typeof counts === 'string') {
      pack.addString(counts, height, width, currentCounts, knownBoxes, knownOffset);
      return;
    }
  }
  if (Array.isArray(segmentation) && segmentation.length === 1) {
    const image = coco.imgs.get(annotation.image_id);
    const polygon: unknown = segmentation[0];
    const height = image?.height;
    const width = image?.width;
    if (isPositiveInteger(height) && isPositiveInteger(width) && isValidPolygon(polygon)) {
      pack.addPolygon(polygon, height, width);
      return;
    }
  }
  // Several polygons, or anything that needs an error message, go the general way.
  pack.addRle(annotationToRle(annotation, coco, role));
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

/**
 * Writes the mask box of a detection from loadRes to boxes[offset..offset + 4) and returns
 * true, or returns false when `coco` has no valid cached box for it.
 */
function cachedMaskBox(coco: COCO, annotation: CocoAnnotation, boxes: Float64Array, offset: number): boolean {
  // NOTE: the check below sees a replaced segmentation or counts string, but not a `size`
  // changed in place after loadRes; such a result would be filtered with its old box.
  const cache = coco.maskBoxes;
  const index = annotation.id - 1;
  if (cache === undefined || !(index >= 0 && index < cache.segmentations.length)) return false;
  const segmentation = annotation.segmentation as CocoRle | undefined;
  if (segmentation === undefined || cache.segmentations[index] !== segmentation || cache.counts[index] !== segmentation.counts) {
    return false;
  }
  for (let k = 0; k < 4; k++) boxes[offset + k] = cache.boxes[4 * index + k]!;
  return true;
}

const dtMasks = new PackedRles();
const gtMasks = new PackedRles();
let dtBoxes = new Float64Array(256);
let dtSlots = new Int32Array(64);

/**
 * Mask IoU for COCOeval's `segm` iouType, with pycocotools' rleIou: crowd regions divide by
 * the detection's area, and pairs whose mask boxes do not overlap get 0. A detection is
 * decoded only when its mask box overlaps a ground-truth mask box.
 */
export const segmIouComputer: IouComputer = {
  iouType: 'segm',
  computeIous(detections, groundTruths, gtIsCrowd, context) {
    const numDts = detections.length;
    const numGts = groundTruths.length;
    if (numDts === 0 || numGts === 0) return new Float64Array(numDts * numGts);

    gtMasks.clear();
    for (const gt of groundTruths) addAnnotation(gtMasks, gt, context.cocoGt, 'ground truth');
    dtMasks.clear();
    if (dtBoxes.length < 4 * numDts) dtBoxes = new Float64Array(8 * numDts);
    if (dtSlots.length < numDts) dtSlots = new Int32Array(2 * numDts);
    for (let d = 0; d < numDts; d++) {
      dtSlots[d] = -1;
      if (cachedMaskBox(context.cocoDt, detections[d]!, dtBoxes, 4 * d)) continue;
      const slot = dtMasks.size;
      dtSlots[d] = slot;
      addAnnotation(dtMasks, detections[d]!, context.cocoDt, 'detection');
      for (let k = 0; k < 4; k++) dtBoxes[4 * d + k] = dtMasks.boxes[4 * slot + k]!;
    }

    const ious = boxIouMatrix(dtBoxes, gtMasks.boxes, gtIsCrowd, numDts, numGts);
    for (let d = 0; d < numDts; d++) {
      for (let g = 0; g < numGts; g++) {
        const index = d * numGts + g;
        if (!(ious[index]! > 0)) continue;
        if (dtSlots[d]! < 0) {
          dtSlots[d] = dtMasks.size;
          addAnnotation(dtMasks, detections[d]!, context.cocoDt, 'detection', dtBoxes, 4 * d);
        }
        ious[index] = maskPairIou(dtMasks, dtSlots[d]!, gtMasks, g, gtIsCrowd[g] !== 0);
      }
    }
    return ious;
  },
};

registerIouComputer(segmIouComputer);
