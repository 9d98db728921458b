/** Formats seconds as H:MM:SS (or M:SS under an hour). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = String(m).padStart(h > 0 ? 2 : 1, '0');
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/**
 * A one-line progress bar on stderr, drawn only when stderr is a terminal (log files and CI
 * get the periodic log lines instead). `clear()` removes it before a log line is written.
 */
export class ProgressBar {
  private readonly enabled: boolean;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly total: number,
    enabled = process.stderr.isTTY === true,
  ) {
    this.enabled = enabled;
  }

  update(done: number, suffix = ''): void {
    if (!this.enabled) return;
    const width = 30;
    const filled = this.total > 0 ? Math.min(width, Math.round((done / this.total) * width)) : width;
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    process.stderr.write(`\r${this.label} [${bar}] ${done}/${this.total} ${suffix}\u001b[K`);
    this.drawn = true;
  }

  clear(): void {
    if (!this.enabled || !this.drawn) return;
    process.stderr.write('\r\u001b[K');
    this.drawn = false;
  }
}
