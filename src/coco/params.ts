/** Evaluation parameters of COCOeval, with pycocotools' defaults for box and mask evaluation. */
import { ConfigError } from '../utils/errors.ts';
import { linspace } from './numeric.ts';
import { describeValue, isFiniteNumber } from './values.ts';

/** Object area range [min, max] in square pixels. Both bounds belong to the range. */
export type AreaRange = [min: number, max: number];

export class Params {
  /** Images to evaluate. COCOeval starts with all ground-truth image ids. */
  imgIds: number[] = [];
  /** Categories to evaluate. COCOeval starts with all ground-truth category ids. */
  catIds: number[] = [];
  /** IoU thresholds 0.50:0.05:0.95, the ten values numpy's linspace gives. */
  iouThrs: number[] = linspace(0.5, 0.95, Math.round((0.95 - 0.5) / 0.05) + 1);
  /** Recall thresholds 0:0.01:1 (101 values) at which precision is sampled. */
  recThrs: number[] = linspace(0, 1, Math.round((1 - 0) / 0.01) + 1);
  /** Maximum detections per image and category, sorted ascending by evaluate(). */
  maxDets: number[] = [1, 10, 100];
  areaRng: AreaRange[] = [
    [0 ** 2, 1e5 ** 2],
    [0 ** 2, 32 ** 2],
    [32 ** 2, 96 ** 2],
    [96 ** 2, 1e5 ** 2],
  ];
  areaRngLbl: string[] = ['all', 'small', 'medium', 'large'];
  /** When false, categories are ignored and every detection may match every object, as in proposal scoring. */
  useCats = true;

  constructor(readonly iouType: string) {}

  clone(): Params {
    const copy = new Params(this.iouType);
    copy.imgIds = [...this.imgIds];
    copy.catIds = [...this.catIds];
    copy.iouThrs = [...this.iouThrs];
    copy.recThrs = [...this.recThrs];
    copy.maxDets = [...this.maxDets];
    copy.areaRng = this.areaRng.map(([min, max]) => [min, max]);
    copy.areaRngLbl = [...this.areaRngLbl];
    copy.useCats = this.useCats;
    return copy;
  }
}

function checkNumberList(name: string, list: unknown, check: (value: number) => boolean, expected: string): void {
  if (!Array.isArray(list) || list.length === 0) {
    throw new ConfigError(`params.${name}: expected a non-empty array of ${expected}, found ${describeValue(list)}`);
  }
  list.forEach((value, index) => {
    if (!isFiniteNumber(value) || !check(value)) {
      throw new ConfigError(`params.${name}[${index}]: expected ${expected}, found ${describeValue(value)}`);
    }
  });
}

/** Throws ConfigError naming the parameter when a threshold, limit or area range is invalid. */
export function checkParams(params: Params): void {
  checkNumberList('iouThrs', params.iouThrs, (v) => v >= 0 && v <= 1, 'IoU thresholds in [0, 1]');
  checkNumberList('recThrs', params.recThrs, (v) => v >= 0 && v <= 1, 'recall thresholds in [0, 1]');
  checkNumberList('maxDets', params.maxDets, (v) => Number.isInteger(v) && v > 0, 'positive integers');
  for (const name of ['imgIds', 'catIds'] as const) {
    params[name].forEach((value, index) => {
      if (!isFiniteNumber(value)) {
        throw new ConfigError(`params.${name}[${index}]: expected a numeric id, found ${describeValue(value)}`);
      }
    });
  }

  if (!Array.isArray(params.areaRng) || params.areaRng.length === 0) {
    throw new ConfigError(`params.areaRng: expected a non-empty array of [min, max] pairs, found ${describeValue(params.areaRng)}`);
  }
  params.areaRng.forEach((range, index) => {
    if (!Array.isArray(range) || range.length !== 2 || !range.every(isFiniteNumber) || range[0] > range[1]) {
      throw new ConfigError(`params.areaRng[${index}]: expected [min, max] with min <= max, found ${describeValue(range)}`);
    }
  });
  if (!Array.isArray(params.areaRngLbl) || params.areaRngLbl.length !== params.areaRng.length) {
    throw new ConfigError(
      `params.areaRngLbl: expected one label per area range (${params.areaRng.length}), found ${describeValue(params.areaRngLbl)}`,
    );
  }
}
