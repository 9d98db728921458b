import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Appends one JSON object per line to `<work dir>/metrics.jsonl`, apart from the human log,
 * like MMDetection's `*.log.json`. Each record is written with one append call, so a crash
 * leaves only whole lines behind.
 */
export class MetricsWriter {
  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
  }

  write(record: Record<string, unknown>): void {
    appendFileSync(this.path, JSON.stringify(record) + '\n');
  }
}
