import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import test from 'ava';

import { runTool } from './run_tool.ts';

const FIXTURES = resolve('test/fixtures/coco');
const TOLERANCE = 1e-12;

function withTempDir(run: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'rladet-coco-eval-'));
  try {
    run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('coco_eval help documents every option', (t) => {
  const { status, stdout, stderr } = runTool('coco_eval.ts', ['--help']);
  t.is(status, 0);
  t.is(stderr, '');
  for (const option of ['--gt FILE', '--dt FILE', '--iou-type TYPE', '--per-class', '--json-out FILE', '-h, --help']) {
    t.true(stdout.includes(option), option);
  }
  t.true(stdout.includes('exit status'));
});

test('coco_eval prints table and writes JSON', (t) => {
  withTempDir((dir) => {
    const out = join(dir, 'report.json');
    const { status, stdout, stderr } = runTool('coco_eval.ts', [
      '--gt', join(FIXTURES, 'dev40_gt.json'),
      '--dt', join(FIXTURES, 'dev40_dt_bbox.json'),
      '--iou-type', 'bbox',
      '--json-out', out,
    ]);
    t.is(status, 0, stderr);
    const lines = stdout.trimEnd().split('\n');
    t.is(lines.length, 12);
    t.is(lines[0], ' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.364');
    t.is(lines[11], ' Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.509');

    const report = JSON.parse(readFileSync(out, 'utf8')) as {
      stats: number[];
      statNames: string[];
      perCategory: Array<{ categoryId: number; ap: number }>;
      seconds: Record<string, number>;
    };
    const reference = JSON.parse(readFileSync(join(FIXTURES, 'dev40_ref_bbox.json'), 'utf8')) as {
      stats: number[];
      per_category: Array<{ AP: number }>;
    };
    t.is(report.stats.length, 12);
    report.stats.forEach((value, i) => t.true(Math.abs(value - reference.stats[i]!) < TOLERANCE, `stats[${i}]`));
    t.is(report.statNames[0], 'AP@[0.50:0.95]|all|100');
    t.is(report.statNames[1], 'AP@0.50|all|100');
    t.is(report.statNames[11], 'AR@[0.50:0.95]|large|100');
    t.is(report.perCategory.length, 80);
    report.perCategory.forEach((row, k) => t.true(Math.abs(row.ap - reference.per_category[k]!.AP) < TOLERANCE, `category ${row.categoryId}`));
    t.deepEqual(Object.keys(report.seconds), ['loadGt', 'loadResults', 'evaluate', 'accumulate', 'summarize', 'total']);
  });
});

test('coco_eval per-class table for masks', (t) => {
  const { status, stdout, stderr } = runTool('coco_eval.ts', [
    '--gt', join(FIXTURES, 'dev40_gt.json'),
    '--dt', join(FIXTURES, 'dev40_dt_segm.json.gz'),
    '--iou-type', 'segm',
    '--per-class',
  ]);
  t.is(status, 0, stderr);
  const [table, perClass] = stdout.trimEnd().split('\n\n');
  t.is(table!.split('\n')[0], ' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.332');
  const rows = perClass!.split('\n');
  t.is(rows[0], 'category      id      AP    AP50    AP75   AR@100');
  t.is(rows[1], 'class_01       1   0.248   0.421   0.260    0.383');
  t.is(rows.length, 81);
});

test('coco_eval usage errors exit with 2', (t) => {
  const missing = runTool('coco_eval.ts', ['--dt', 'x.json', '--iou-type', 'bbox']);
  t.is(missing.status, 2);
  t.is(missing.stdout, '');
  t.true(missing.stderr.startsWith('error: missing --gt FILE\n\nusage:'), missing.stderr);

  const badType = runTool('coco_eval.ts', ['--gt', 'a.json', '--dt', 'b.json', '--iou-type', 'keypoints']);
  t.is(badType.status, 2);
  t.true(badType.stderr.startsWith("error: --iou-type: 'keypoints' is not supported (supported: bbox, segm)\n"), badType.stderr);

  const unknown = runTool('coco_eval.ts', ['--gt', 'a.json', '--dt', 'b.json', '--iou-type', 'bbox', '--per-image']);
  t.is(unknown.status, 2);
  t.true(unknown.stderr.startsWith("error: Unknown option '--per-image'"), unknown.stderr);
});

test('coco_eval data errors exit with 1', (t) => {
  withTempDir((dir) => {
    const gt = join(FIXTURES, 'dev40_gt.json');
    const notFound = runTool('coco_eval.ts', ['--gt', join(dir, 'none.json'), '--dt', 'b.json', '--iou-type', 'bbox']);
    t.is(notFound.status, 1);
    t.is(notFound.stdout, '');
    t.is(notFound.stderr, `error: DataError: ${join(dir, 'none.json')}: file not found\n`);

    const results = join(dir, 'results.json');
    writeFileSync(results, JSON.stringify([{ image_id: 1, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 }]));
    const unknownImage = runTool('coco_eval.ts', ['--gt', gt, '--dt', results, '--iou-type', 'bbox']);
    t.is(unknownImage.status, 1);
    t.is(
      unknownImage.stderr,
      `error: DataError: ${results}: 1 image id(s) of the results are not in the ground truth ${gt}: 1 (first at ${results}[0]). ` +
        'Evaluate against the annotation file the detections were made for.\n',
    );

    writeFileSync(results, '[{"image_id": 1, ');
    const truncated = runTool('coco_eval.ts', ['--gt', gt, '--dt', results, '--iou-type', 'bbox']);
    t.is(truncated.status, 1);
    t.is(truncated.stderr, `error: DataError: ${results}: invalid JSON: the data ends at byte 17 before the document is complete\n`);

    const swapped = runTool('coco_eval.ts', ['--gt', gt, '--dt', gt, '--iou-type', 'bbox']);
    t.is(swapped.status, 1);
    t.is(swapped.stderr, `error: DataError: ${gt}: expected a JSON list of results, found a JSON object; is it a ground-truth file?\n`);
  });
});

test('coco_eval names invalid ground truth', (t) => {
  withTempDir((dir) => {
    const complete = {
      images: [{ id: 1, width: 100, height: 100 }],
      categories: [{ id: 1, name: 'person' }],
      annotations: [{ id: 5, image_id: 1, category_id: 1, bbox: [10, 20, 30, 40], area: 1200, iscrowd: 0 }],
    };
    const results = join(dir, 'results.json');
    writeFileSync(results, JSON.stringify([{ image_id: 1, category_id: 1, bbox: [10, 20, 30, 40], score: 0.5 }]));
    const gt = join(dir, 'gt.json');
    const runOn = (dataset: object) => {
      writeFileSync(gt, JSON.stringify(dataset));
      return runTool('coco_eval.ts', ['--gt', gt, '--dt', results, '--iou-type', 'bbox']);
    };

    const { categories: _categories, ...withoutCategories } = complete;
    const noCategories = runOn(withoutCategories);
    t.is(noCategories.status, 1);
    t.is(noCategories.stderr, `error: DataError: ${gt}: missing 'categories' (a COCO instances file lists its categories)\n`);

    const { images: _images, ...withoutImages } = complete;
    const noImages = runOn(withoutImages);
    t.is(noImages.status, 1);
    t.is(noImages.stderr, `error: DataError: ${gt}: missing 'images' (a COCO instances file lists its images)\n`);

    const { annotations: _annotations, ...withoutAnnotations } = complete;
    const noAnnotations = runOn(withoutAnnotations);
    t.is(noAnnotations.status, 1);
    t.is(noAnnotations.stdout, '');
    t.is(
      noAnnotations.stderr,
      `error: DataError: ${gt}: missing 'annotations', so the ground truth has no annotations to evaluate against. ` +
        'Evaluate against an instances file, because image-info files such as image_info_test2017.json list no annotations.\n',
    );

    const unknownCategory = runOn({ ...complete, annotations: [{ ...complete.annotations[0]!, category_id: 3 }] });
    t.is(unknownCategory.status, 1);
    t.is(
      unknownCategory.stderr,
      `error: DataError: ${gt}: annotations[0] (id 5).category_id: 3 is not a category id in 'categories'\n`,
    );

    const valid = runOn(complete);
    t.is(valid.status, 0, valid.stderr);
    t.true(valid.stdout.startsWith(' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000\n'), valid.stdout);
  });
});
