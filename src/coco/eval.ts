/**
 * COCOeval: COCO detection evaluation with the semantics and numbers of pycocotools'
 * COCOeval (cocodataset/cocoapi, PythonAPI/pycocotools/cocoeval.py).
 *
 *   const gt = new COCO('instances_val2017.json');
 *   const evaluator = new COCOeval(gt, gt.loadRes(results), 'bbox');
 *   evaluator.evaluate();
 *   evaluator.accumulate();
 *   const { stats, text } = evaluator.summarize();
 */
import { accumulateEvaluation, type AccumulatedEval } from './accumulate.ts';
import { requireDatasetLists, type COCO, type CocoLogger } from './coco.ts';
import { evaluateImages, groupIous, matchGroup, MatchBuffers, type EvaluationState } from './evaluate.ts';
import { getIouComputer } from './iou.ts';
import { checkParams, Params, type AreaRange } from './params.ts';
import './segmentation.ts';
import { perCategoryMetrics, summarizeDetections, type CategoryMetrics, type CocoSummary } from './summarize.ts';

export interface CocoEvalOptions {
  /** Logger for the progress messages and the summary table. Without it nothing is logged. */
  logger?: CocoLogger;
}

/** Match results of one image, category and area range, with pycocotools' evalImgs fields. */
export interface EvalImage {
  image_id: number;
  /** The category id, or -1 when params.useCats is false. */
  category_id: number;
  aRng: AreaRange;
  maxDet: number;
  /** Detection ids, by descending score. */
  dtIds: number[];
  /** Ground-truth ids, objects that count first and ignored ones last. */
  gtIds: number[];
  /** [T][D]: id of the matched ground truth at each IoU threshold, or 0. */
  dtMatches: number[][];
  /** [T][G]: id of the matched detection at each IoU threshold, or 0. */
  gtMatches: number[][];
  dtScores: number[];
  /** [G]: 1 for an ignored object (crowd or outside the area range). */
  gtIgnore: number[];
  /** [T][D]: 1 for a detection that counts neither as true nor as false positive. */
  dtIgnore: number[][];
}

function elapsedSeconds(started: number): string {
  return ((performance.now() - started) / 1000).toFixed(2);
}

export class COCOeval {
  /** Parameters for the next evaluate(), with pycocotools' defaults. */
  params: Params;
  /** The 12 summary numbers, set by summarize(). */
  stats: number[] = [];
  /** Precision and recall arrays, set by accumulate(). */
  eval: AccumulatedEval | undefined;
  private state: EvaluationState | undefined;
  private readonly logger: CocoLogger | undefined;

  /**
   * Prepares the evaluation of `cocoDt` (detections, usually from `cocoGt.loadRes`) against
   * `cocoGt`. `iouType` must have a registered IoU computer, which 'bbox' has.
   * params.imgIds and params.catIds start as all ground-truth image and category ids, sorted.
   * Throws DataError when the ground truth lacks 'images', 'categories' or 'annotations'.
   */
  constructor(
    readonly cocoGt: COCO,
    readonly cocoDt: COCO,
    readonly iouType: string,
    options: CocoEvalOptions = {},
  ) {
    getIouComputer(iouType);
    requireDatasetLists(cocoGt, ['images', 'categories', 'annotations']);
    this.logger = options.logger;
    this.params = new Params(iouType);
    this.params.imgIds = cocoGt.getImgIds().sort((a, b) => a - b);
    this.params.catIds = cocoGt.getCatIds().sort((a, b) => a - b);
  }

  /**
   * Matches detections to ground truth on every image, for every category and area range.
   * Later changes to `params` take effect at the next evaluate().
   */
  evaluate(): void {
    const started = performance.now();
    this.logger?.info(`running per image evaluation, iouType ${this.params.iouType}`);
    checkParams(this.params);
    this.state = evaluateImages(this.cocoGt, this.cocoDt, this.params, getIouComputer(this.params.iouType));
    if (this.state.gtIds.includes(0)) {
      this.logger?.warn(
        `${this.cocoGt.source}: a ground-truth annotation has id 0; as in pycocotools, a detection matched ` +
          'to it counts as a false positive. Renumber annotation ids from 1 to avoid this.',
      );
    }
    this.eval = undefined;
    this.stats = [];
    this.logger?.info(`done (t=${elapsedSeconds(started)}s)`);
  }

  /** Computes precision and recall for every IoU threshold, category, area range and maxDets. */
  accumulate(): AccumulatedEval {
    const state = this.requireEvaluated('accumulate');
    const started = performance.now();
    this.logger?.info('accumulating evaluation results');
    this.eval = accumulateEvaluation(state);
    this.logger?.info(`done (t=${elapsedSeconds(started)}s)`);
    return this.eval;
  }

  /** Computes the 12 summary numbers, stores them in `stats`, and returns them with pycocotools' table text. */
  summarize(): CocoSummary {
    if (this.eval === undefined) throw new Error('COCOeval.summarize: call accumulate() first');
    const summary = summarizeDetections(this.eval);
    this.stats = summary.stats;
    if (this.logger !== undefined) for (const line of summary.text.split('\n')) this.logger.info(line);
    return summary;
  }

  /** Returns AP, AP50, AP75 and AR of each evaluated category, in params.catIds order. */
  perCategory(): CategoryMetrics[] {
    if (this.eval === undefined || this.state === undefined) {
      throw new Error('COCOeval.perCategory: call accumulate() first');
    }
    const categoryName = (id: number) => this.cocoGt.cats.get(id)?.name;
    return perCategoryMetrics(this.eval, this.state.categoryIds, categoryName);
  }

  /**
   * Rebuilds pycocotools' evalImgs list for debugging: one entry per (category, area range,
   * image) in that nesting order, null where the image has neither ground truth nor
   * detections of the category. It allocates plain arrays for every entry, so it is meant for
   * small sets.
   */
  getEvalImgs(): Array<EvalImage | null> {
    const state = this.requireEvaluated('getEvalImgs');
    const p = state.params;
    const numImages = p.imgIds.length;
    const numThresholds = p.iouThrs.length;
    const buffers = new MatchBuffers();
    const result: Array<EvalImage | null> = [];

    for (let k = 0; k < state.categoryIds.length; k++) {
      for (const areaRange of p.areaRng) {
        for (let i = 0; i < numImages; i++) {
          const group = state.groupOfCell[k * numImages + i]!;
          if (group < 0) {
            result.push(null);
            continue;
          }
          const gtStart = state.groupGtStart[group]!;
          const dtStart = state.groupDtStart[group]!;
          const numGts = state.groupGtStart[group + 1]! - gtStart;
          const numDts = state.groupDtStart[group + 1]! - dtStart;
          matchGroup(state, group, groupIous(state, group), areaRange, buffers);
          const rows = (array: ArrayLike<number>, width: number) =>
            Array.from({ length: numThresholds }, (_, t) => Array.from({ length: width }, (_, n) => array[t * width + n]!));
          result.push({
            image_id: p.imgIds[i]!,
            category_id: state.categoryIds[k]!,
            aRng: [areaRange[0], areaRange[1]],
            maxDet: p.maxDets[p.maxDets.length - 1]!,
            dtIds: Array.from(state.dtIds.subarray(dtStart, dtStart + numDts)),
            gtIds: Array.from({ length: numGts }, (_, j) => buffers.sortedGtIds[j]!),
            dtMatches: rows(buffers.dtMatches, numDts),
            gtMatches: rows(buffers.gtMatches, numGts),
            dtScores: Array.from(state.dtScores.subarray(dtStart, dtStart + numDts)),
            gtIgnore: Array.from({ length: numGts }, (_, j) => buffers.gtIgnore[j]!),
            dtIgnore: rows(buffers.dtIgnore, numDts),
          });
        }
      }
    }
    return result;
  }

  private requireEvaluated(method: string): EvaluationState {
    if (this.state === undefined) throw new Error(`COCOeval.${method}: call evaluate() first`);
    return this.state;
  }
}
