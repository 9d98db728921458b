/**
 * IoU computation per COCOeval `iouType`. The evaluator looks the computer up by name, so
 * mask IoU (`segm`) or keypoint similarity can be added with `registerIouComputer` without
 * changing the matching code.
 */
import { ConfigError, DataError } from '../utils/errors.ts';
import type { COCO } from './coco.ts';
import type { CocoAnnotation } from './types.ts';

/** The two indexes being evaluated, for computers that need image sizes or other records. */
export interface IouContext {
  cocoGt: COCO;
  cocoDt: COCO;
}

export interface IouComputer {
  /** Name used as COCOeval's `iouType`, such as 'bbox'. */
  readonly iouType: string;
  /**
   * Computes the overlap of every detection with every ground-truth object of one image and
   * category. Returns a row-major D x G matrix (one row per detection, in the order given).
   * `gtIsCrowd[g]` is 1 for a crowd region, whose overlap is intersection over the
   * detection's own area, as in pycocotools.
   */
  computeIous(
    detections: readonly CocoAnnotation[],
    groundTruths: readonly CocoAnnotation[],
    gtIsCrowd: Uint8Array,
    context: IouContext,
  ): Float64Array;
}

const computers = new Map<string, IouComputer>();

/** Registers `computer` under its iouType. Registering a name twice throws. */
export function registerIouComputer(computer: IouComputer): void {
  if (computers.has(computer.iouType)) {
    throw new Error(`IoU computer '${computer.iouType}' is already registered`);
  }
  computers.set(computer.iouType, computer);
}

export function getIouComputer(iouType: string): IouComputer {
  const computer = computers.get(iouType);
  if (computer === undefined) {
    const known = [...computers.keys()].join(', ');
    throw new ConfigError(`iouType '${iouType}' is not supported; supported iouTypes: ${known}`);
  }
  return computer;
}

export function registeredIouTypes(): string[] {
  return [...computers.keys()];
}

/** Copies the annotations' boxes into a flat [x, y, w, h, ...] array, rejecting invalid ones. */
function packBoxes(annotations: readonly CocoAnnotation[], role: 'detection' | 'ground truth'): Float64Array {
  const boxes = new Float64Array(annotations.length * 4);
  for (let n = 0; n < annotations.length; n++) {
    const annotation = annotations[n]!;
    const bbox = annotation.bbox;
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw new DataError(
        `${role} annotation ${annotation.id} (image ${annotation.image_id}): bbox must be 4 finite numbers ` +
          `[x, y, width, height], found ${JSON.stringify(bbox)}`,
      );
    }
    boxes.set(bbox, n * 4);
  }
  return boxes;
}

/**
 * Box IoU on [x, y, w, h] boxes with the arithmetic of pycocotools' `bbIou` (maskApi.c).
 * The intersection's width is min(x + w) - max(x), and its height likewise. Pairs that do
 * not overlap get 0. For a crowd region the union is the detection's area.
 */
export const bboxIouComputer: IouComputer = {
  iouType: 'bbox',
  computeIous(detections, groundTruths, gtIsCrowd) {
    const numDetections = detections.length;
    const numGroundTruths = groundTruths.length;
    const ious = new Float64Array(numDetections * numGroundTruths);
    if (numDetections === 0 || numGroundTruths === 0) return ious;

    const dt = packBoxes(detections, 'detection');
    const gt = packBoxes(groundTruths, 'ground truth');
    for (let g = 0; g < numGroundTruths; g++) {
      const gx = gt[g * 4]!;
      const gy = gt[g * 4 + 1]!;
      const gw = gt[g * 4 + 2]!;
      const gh = gt[g * 4 + 3]!;
      const gtArea = gw * gh;
      const crowd = gtIsCrowd[g] !== 0;
      for (let d = 0; d < numDetections; d++) {
        const dx = dt[d * 4]!;
        const dy = dt[d * 4 + 1]!;
        const dw = dt[d * 4 + 2]!;
        const dh = dt[d * 4 + 3]!;
        const width = Math.min(dw + dx, gw + gx) - Math.max(dx, gx);
        if (width <= 0) continue;
        const height = Math.min(dh + dy, gh + gy) - Math.max(dy, gy);
        if (height <= 0) continue;
        const intersection = width * height;
        const dtArea = dw * dh;
        const union = crowd ? dtArea : dtArea + gtArea - intersection;
        ious[d * numGroundTruths + g] = intersection / union;
      }
    }
    return ious;
  },
};

registerIouComputer(bboxIouComputer);
