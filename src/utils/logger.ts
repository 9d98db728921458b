/**
 * A small levelled logger. Messages go to stderr so that stdout stays free for results
 * (tables, JSON). The level comes from RLADET_LOG_LEVEL (debug, info, warn, error, silent);
 * tests set it to `warn` or `silent`.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const LEVEL_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

function levelFromEnv(): LogLevel {
  const value = process.env['RLADET_LOG_LEVEL'];
  if (value !== undefined && value in LEVEL_ORDER) return value as LogLevel;
  return 'info';
}

let currentLevel: LogLevel = levelFromEnv();
type Sink = (line: string) => void;
let extraSinks: Sink[] = [];
const warnedKeys = new Set<string>();

export function setLogLevel(level: LogLevel): void {
  currentLevel = level;
}

export function getLogLevel(): LogLevel {
  return currentLevel;
}

/** Adds a sink (for example the work dir's log file) that receives every line written. */
export function addLogSink(sink: Sink): () => void {
  extraSinks.push(sink);
  return () => {
    extraSinks = extraSinks.filter((s) => s !== sink);
  };
}

function timestamp(): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Formats a log line as the logger writes it: time, level, scope and message. */
export function formatLogLine(level: Exclude<LogLevel, 'silent'>, scope: string, message: string): string {
  return `${timestamp()} ${level.toUpperCase().padEnd(5)} ${scope}: ${message}`;
}

export class Logger {
  constructor(readonly scope: string) {}

  private write(level: Exclude<LogLevel, 'silent'>, message: string): void {
    const line = formatLogLine(level, this.scope, message);
    for (const sink of extraSinks) sink(line);
    if (LEVEL_ORDER[level] < LEVEL_ORDER[currentLevel]) return;
    process.stderr.write(line + '\n');
  }

  debug(message: string): void {
    this.write('debug', message);
  }
  info(message: string): void {
    this.write('info', message);
  }
  warn(message: string): void {
    this.write('warn', message);
  }
  error(message: string): void {
    this.write('error', message);
  }

  /** Logs a warning once per key for the life of the process. */
  warnOnce(key: string, message: string): void {
    if (warnedKeys.has(key)) return;
    warnedKeys.add(key);
    this.warn(message);
  }
}

export function getLogger(scope: string): Logger {
  return new Logger(scope);
}
