/**
 * IoU computation per COCOeval `iouType`. The evaluator looks the computer up by name, so
 * mask IoU (`segm`) or keypoint similarity can be added with `registerIouComputer` without
 * changing the matching code.
 */
import { ConfigError, DataError } from '../utils/errors.ts';
import type { COCO } from './coco.ts';
import { boxIouMatrix } from './rle.ts';
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

/** Returns the error for an annotation whose bbox is not 4 finite numbers. */
export function invalidBoxError(annotation: CocoAnnotation, role: 'detection' | 'ground truth'): DataError {
  return new DataError(
    `${role} annotation ${annotation.id} (image ${annotation.image_id}): bbox must be 4 finite numbers ` +
      `[x, y, width, height], found ${JSON.stringify(annotation.bbox)}`,
  );
}

/** Copies the annotations' boxes into a flat [x, y, w, h, ...] array, rejecting invalid ones. */
function packBoxes(annotations: readonly CocoAnnotation[], role: 'detection' | 'ground truth'): Float64Array {
  const boxes = new Float64Array(annotations.length * 4);
  for (let n = 0; n < annotations.length; n++) {
    const annotation = annotations[n]!;
    const bbox = annotation.bbox;
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw invalidBoxError(annotation, role);
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
    if (detections.length === 0 || groundTruths.length === 0) return new Float64Array(detections.length * groundTruths.length);
    return boxIouMatrix(packBoxes(detections, 'detection'), packBoxes(groundTruths, 'ground truth'), gtIsCrowd);
  },
};

registerIouComputer(bboxIouComputer);
