/**
 * Reference COCO evaluation: a line-by-line port of pycocotools' COCOeval.evaluate,
 * evaluateImg and accumulate (cocoapi 8c9bcc3, PythonAPI/pycocotools/cocoeval.py) with one
 * object per image, category and area range, as the Python code keeps them.
 *
 * It is slow and memory-hungry on purpose: it shares no matching or accumulation code with
 * COCOeval's packed implementation, so tests and the benchmark can check that one against it
 * on inputs that have no pycocotools output. IoUs and the summary reuse the shared code,
 * which the pycocotools fixtures test directly.
 */
import type { AccumulatedEval } from './accumulate.ts';
import { crowdFlag, type COCO } from './coco.ts';
import type { IouComputer } from './iou.ts';
import { Params, type AreaRange } from './params.ts';
import type { CocoAnnotation } from './types.ts';

/** numpy's np.spacing(1). */
const EPSILON = Number.EPSILON;

interface ReferenceEvalImage {
  dtIds: number[];
  /** [T][D] matched ground-truth ids, 0 for none. */
  dtMatches: Float64Array[];
  dtScores: number[];
  gtIgnore: number[];
  /** [T][D] 1 for ignored detections. */
  dtIgnore: Uint8Array[];
}

/** Returns the indices that sort `keys` ascending, ties in input order (numpy's argsort, kind='mergesort'). */
function stableArgsort(keys: readonly number[]): number[] {
  const indices = keys.map((_, i) => i);
  return indices.sort((a, b) => {
    if (keys[a]! < keys[b]!) return -1;
    if (keys[a]! > keys[b]!) return 1;
    return a - b;
  });
}

/** Returns the first index i with sorted[i] >= value (numpy's searchsorted, side='left'). */
function searchSortedLeft(sorted: readonly number[], value: number): number {
  let i = 0;
  while (i < sorted.length && sorted[i]! < value) i++;
  return i;
}

/**
 * Runs evaluate and accumulate the way pycocotools does and returns the accumulated arrays in
 * COCOeval's layout. `configure` may change the parameters first, as on a COCOeval.
 */
export function referenceEvaluate(
  cocoGt: COCO,
  cocoDt: COCO,
  iouComputer: IouComputer,
  configure?: (params: Params) => void,
): AccumulatedEval {
  const p = new Params(iouComputer.iouType);
  p.imgIds = cocoGt.getImgIds().sort((a, b) => a - b);
  p.catIds = cocoGt.getCatIds().sort((a, b) => a - b);
  configure?.(p);
  p.imgIds = [...new Set(p.imgIds)].sort((a, b) => a - b);
  if (p.useCats) p.catIds = [...new Set(p.catIds)].sort((a, b) => a - b);
  p.maxDets = [...p.maxDets].sort((a, b) => a - b);

  // _prepare
  const filter = p.useCats ? { imgIds: p.imgIds, catIds: p.catIds } : { imgIds: p.imgIds };
  const gts = cocoGt.loadAnns(cocoGt.getAnnIds(filter));
  const dts = cocoDt.loadAnns(cocoDt.getAnnIds(filter));
  const gtsByKey = new Map<string, CocoAnnotation[]>();
  const dtsByKey = new Map<string, CocoAnnotation[]>();
  for (const gt of gts) push(gtsByKey, `${gt.image_id},${gt.category_id}`, gt);
  for (const dt of dts) push(dtsByKey, `${dt.image_id},${dt.category_id}`, dt);

  const catIds = p.useCats ? p.catIds : [-1];
  const lists = (imgId: number, catId: number) => {
    if (p.useCats) return { gt: gtsByKey.get(`${imgId},${catId}`) ?? [], dt: dtsByKey.get(`${imgId},${catId}`) ?? [] };
    return {
      gt: p.catIds.flatMap((id) => gtsByKey.get(`${imgId},${id}`) ?? []),
      dt: p.catIds.flatMap((id) => dtsByKey.get(`${imgId},${id}`) ?? []),
    };
  };
  const maxDet = p.maxDets[p.maxDets.length - 1]!;

  // computeIoU
  const ious = new Map<string, Float64Array>();
  for (const imgId of p.imgIds) {
    for (const catId of catIds) {
      const { gt, dt } = lists(imgId, catId);
      if (gt.length === 0 && dt.length === 0) continue;
      const order = stableArgsort(dt.map((d) => -d.score!));
      const sorted = order.map((i) => dt[i]!).slice(0, maxDet);
      const crowd = Uint8Array.from(gt, (g) => (crowdFlag(g) !== 0 ? 1 : 0));
      const matrix =
        sorted.length === 0 || gt.length === 0
          ? new Float64Array(0)
          : iouComputer.computeIous(sorted, gt, crowd, { cocoGt, cocoDt });
      ious.set(`${imgId},${catId}`, matrix);
    }
  }

  const evaluateImg = (imgId: number, catId: number, aRng: AreaRange): ReferenceEvalImage | null => {
    const { gt: gtList, dt: dtList } = lists(imgId, catId);
    if (gtList.length === 0 && dtList.length === 0) return null;
    const ignoreFlags = gtList.map((g) => (crowdFlag(g) !== 0 || g.area! < aRng[0] || g.area! > aRng[1] ? 1 : 0));
    const gtind = stableArgsort(ignoreFlags);
    const gt = gtind.map((i) => gtList[i]!);
    const dtind = stableArgsort(dtList.map((d) => -d.score!));
    const dt = dtind.slice(0, maxDet).map((i) => dtList[i]!);
    const iscrowd = gt.map((g) => crowdFlag(g));
    const matrix = ious.get(`${imgId},${catId}`)!;
    const numGtCols = gtList.length;
    const iouAt = (d: number, g: number) => matrix[d * numGtCols + gtind[g]!]!;

    const T = p.iouThrs.length;
    const G = gt.length;
    const D = dt.length;
    const gtm = Array.from({ length: T }, () => new Float64Array(G));
    const dtm = Array.from({ length: T }, () => new Float64Array(D));
    const gtIg = gtind.map((i) => ignoreFlags[i]!);
    const dtIg = Array.from({ length: T }, () => new Uint8Array(D));
    if (matrix.length !== 0) {
      p.iouThrs.forEach((threshold, tind) => {
        dt.forEach((d, dind) => {
          let iou = Math.min(threshold, 1 - 1e-10);
          let m = -1;
          for (let gind = 0; gind < G; gind++) {
            if (gtm[tind]![gind]! > 0 && !iscrowd[gind]) continue;
            if (m > -1 && gtIg[m] === 0 && gtIg[gind] === 1) break;
            if (iouAt(dind, gind) < iou) continue;
            iou = iouAt(dind, gind);
            m = gind;
          }
          if (m === -1) return;
          dtIg[tind]![dind] = gtIg[m]!;
          dtm[tind]![dind] = gt[m]!.id;
          gtm[tind]![m] = d.id;
        });
      });
    }
    dt.forEach((d, dind) => {
      const outside = d.area! < aRng[0] || d.area! > aRng[1];
      for (let tind = 0; tind < T; tind++) {
        if (dtm[tind]![dind] === 0 && outside) dtIg[tind]![dind] = 1;
      }
    });
    return { dtIds: dt.map((d) => d.id), dtMatches: dtm, dtScores: dt.map((d) => d.score!), gtIgnore: gtIg, dtIgnore: dtIg };
  };

  const evalImgs: Array<ReferenceEvalImage | null> = [];
  for (const catId of catIds) {
    for (const aRng of p.areaRng) {
      for (const imgId of p.imgIds) evalImgs.push(evaluateImg(imgId, catId, aRng));
    }
  }
  return referenceAccumulate(p, catIds, evalImgs);
}

function push<V>(map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function referenceAccumulate(p: Params, catIds: number[], evalImgs: Array<ReferenceEvalImage | null>): AccumulatedEval {
  const T = p.iouThrs.length;
  const R = p.recThrs.length;
  const K = catIds.length;
  const A = p.areaRng.length;
  const M = p.maxDets.length;
  const I0 = p.imgIds.length;
  const precision = new Float64Array(T * R * K * A * M).fill(-1);
  const recall = new Float64Array(T * K * A * M).fill(-1);
  const scores = new Float64Array(T * R * K * A * M).fill(-1);

  for (let k = 0; k < K; k++) {
    for (let a = 0; a < A; a++) {
      for (let m = 0; m < M; m++) {
        const maxDet = p.maxDets[m]!;
        const E: ReferenceEvalImage[] = [];
        for (let i = 0; i < I0; i++) {
          const e = evalImgs[k * A * I0 + a * I0 + i];
          if (e) E.push(e);
        }
        if (E.length === 0) continue;
        const dtScores = E.flatMap((e) => e.dtScores.slice(0, maxDet));
        const inds = stableArgsort(dtScores.map((s) => -s));
        const dtScoresSorted = inds.map((i) => dtScores[i]!);
        const npig = E.reduce((sum, e) => sum + e.gtIgnore.filter((g) => g === 0).length, 0);
        if (npig === 0) continue;

        for (let t = 0; t < T; t++) {
          const dtm = E.flatMap((e) => Array.from(e.dtMatches[t]!.subarray(0, maxDet)));
          const dtIg = E.flatMap((e) => Array.from(e.dtIgnore[t]!.subarray(0, maxDet)));
          const tp: number[] = [];
          const fp: number[] = [];
          let tpSum = 0;
          let fpSum = 0;
          for (const i of inds) {
            if (dtm[i] !== 0 && !dtIg[i]) tpSum++;
            if (dtm[i] === 0 && !dtIg[i]) fpSum++;
            tp.push(tpSum);
            fp.push(fpSum);
          }
          const nd = tp.length;
          const rc = tp.map((value) => value / npig);
          const pr = tp.map((value, i) => value / (fp[i]! + value + EPSILON));
          recall[((t * K + k) * A + a) * M + m] = nd ? rc[nd - 1]! : 0;
          for (let i = nd - 1; i > 0; i--) if (pr[i]! > pr[i - 1]!) pr[i - 1] = pr[i]!;
          const q = new Array<number>(R).fill(0);
          const ss = new Array<number>(R).fill(0);
          for (let ri = 0; ri < R; ri++) {
            const pi = searchSortedLeft(rc, p.recThrs[ri]!);
            if (pi >= nd) break; // pycocotools' try/except stops at the first index out of range
            q[ri] = pr[pi]!;
            ss[ri] = dtScoresSorted[pi]!;
          }
          for (let ri = 0; ri < R; ri++) {
            precision[(((t * R + ri) * K + k) * A + a) * M + m] = q[ri]!;
            scores[(((t * R + ri) * K + k) * A + a) * M + m] = ss[ri]!;
          }
        }
      }
    }
  }
  return { params: p, counts: [T, R, K, A, M], date: '', precision, recall, scores };
}
