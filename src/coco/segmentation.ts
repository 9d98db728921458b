/**
 * Conversion of annotation segmentations (polygons, uncompressed or compressed RLE) to RLEs,
 * as pycocotools' COCO.annToRLE does, and the mask IoU computer for `segm` evaluation.
 */
import { DataError } from '../utils/errors.ts';
import type { COCO } from './coco.ts';
import { registerIouComputer, type IouComputer } from './iou.ts';
import { toRle } from './mask.ts';
import { checkPolygon, rleFrPoly, rleIouMatrix, rleMerge, type Rle } from './rle.ts';
import type { CocoAnnotation } from './types.ts';
import { describeValue } from './values.ts';

/**
 * Converts a segmentation to one RLE: the union of its polygons (rasterised at the image size
 * `height` x `width`), or the RLE it holds, whose own size is used. `where` names the
 * segmentation in error messages.
 *
 * Unlike pycocotools, a polygon list whose first polygon has 4 numbers is rasterised as
 * polygons (pycocotools takes it for boxes and fails), and an empty list gives an empty mask.
 */
export function segmentationToRle(segmentation: unknown, height: number | undefined, width: number | undefined, where: string): Rle {
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
      `${where}: polygons need the image's height and width as positive integers, found ` +
        `height ${describeValue(height)} and width ${describeValue(width)}`,
    );
  }
  if (segmentation.length === 0) return { height, width, counts: Uint32Array.of(height * width) };
  const parts = segmentation.map((polygon: unknown, i) => {
    checkPolygon(polygon, `${where}[${i}]`);
    return rleFrPoly(polygon, height, width);
  });
  return rleMerge(parts, false, where);
}

/** Describes an annotation for error messages: "gt.json: ground truth annotation 7 (image 42)". */
export function describeAnnotation(coco: COCO, annotation: CocoAnnotation, role = ''): string {
  const prefix = role === '' ? '' : `${role} `;
  return `${coco.source}: ${prefix}annotation ${annotation.id} (image ${annotation.image_id})`;
}

/** Converts an annotation's segmentation to an RLE, reading polygon sizes from its image in `coco`. */
export function annotationToRle(annotation: CocoAnnotation, coco: COCO, role = ''): Rle {
  const where = `${describeAnnotation(coco, annotation, role)}.segmentation`;
  if (annotation.segmentation === undefined) {
    throw new DataError(`${where}: missing; mask evaluation needs polygons or an RLE`);
  }
  const segmentation = annotation.segmentation;
  if (!Array.isArray(segmentation)) return toRle(segmentation, where);
  const image = coco.imgs.get(annotation.image_id);
  if (image === undefined) {
    throw new DataError(`${where}: image id ${annotation.image_id} is not in ${coco.source}, so its size is unknown`);
  }
  return segmentationToRle(segmentation, image.height, image.width, where);
}

/**
 * Mask IoU for COCOeval's `segm` iouType, with pycocotools' rleIou: crowd regions divide by
 * the detection's area, and pairs whose mask boxes do not overlap get 0.
 */
export const segmIouComputer: IouComputer = {
  iouType: 'segm',
  computeIous(detections, groundTruths, gtIsCrowd, context) {
    if (detections.length === 0 || groundTruths.length === 0) {
      return new Float64Array(detections.length * groundTruths.length);
    }
    const gts = groundTruths.map((gt) => annotationToRle(gt, context.cocoGt, 'ground truth'));
    const dts = detections.map((dt) => annotationToRle(dt, context.cocoDt, 'detection'));
    return rleIouMatrix(dts, gts, gtIsCrowd);
  },
};

registerIouComputer(segmIouComputer);
