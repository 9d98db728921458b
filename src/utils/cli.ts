import { parseArgs, type ParseArgsConfig } from 'node:util';

import { BACKEND_CHOICES, type BackendChoice } from '../backends/choices.ts';
import { RladetError } from './errors.ts';

/** An error in command-line usage; tools print it with the usage text and exit with code 2. */
export class UsageError extends RladetError {}

/**
 * Collects MMDetection-style multi-value options (`--cfg-options a=1 b.c=x`): every argument
 * after the flag that does not start with '--' belongs to it. Returns the remaining argv and
 * the collected values.
 */
export function takeMultiValueOption(argv: readonly string[], flag: string): { rest: string[]; values: string[] } {
  const rest: string[] = [];
  const values: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === flag) {
      while (i + 1 < argv.length && !argv[i + 1]!.startsWith('--') && argv[i + 1]!.includes('=')) values.push(argv[++i]!);
      continue;
    }
    if (arg.startsWith(`${flag}=`)) {
      values.push(arg.slice(flag.length + 1));
      continue;
    }
    rest.push(arg);
  }
  return { rest, values };
}

/** `parseArgs` that turns its TypeError into a UsageError. */
export function parseCommandLine<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Checks whether `error` comes from a failed file system call (it has an errno code and a syscall). */
function isFileSystemError(error: unknown): error is NodeJS.ErrnoException {
  const candidate = error as NodeJS.ErrnoException;
  return error instanceof Error && typeof candidate.code === 'string' && typeof candidate.syscall === 'string';
}

/**
 * Runs a tool's main function: usage errors print the message and usage to stderr and exit
 * with 2. Other rladet errors and failed file system calls print their message and exit with
 * 1, and anything else prints its stack and exits with 1.
 */
export function runMain(main: () => Promise<void>, usage: string): void {
  main().then(
    () => undefined,
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`error: ${error.message}\n\n${usage}\n`);
        process.exitCode = 2;
      } else if (error instanceof RladetError) {
        process.stderr.write(`error: ${error.name}: ${error.message}\n`);
        process.exitCode = 1;
      } else if (isFileSystemError(error)) {
        // A path that cannot be read or written is a user error: the message is enough, without a stack.
        const path = error.path !== undefined && !error.message.includes(error.path) ? ` (${error.path})` : '';
        process.stderr.write(`error: ${error.message}${path}\n`);
        process.exitCode = 1;
      } else {
        process.stderr.write(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
        process.exitCode = 1;
      }
    },
  );
}

/** Checks the value of a `--backend` option; undefined (option not given) passes through. */
export function parseBackendOption(value: string | undefined): BackendChoice | undefined {
  if (value === undefined) return undefined;
  if (!(BACKEND_CHOICES as readonly string[]).includes(value)) {
    throw new UsageError(`--backend: '${value}' is not one of ${BACKEND_CHOICES.join(', ')}`);
  }
  return value as BackendChoice;
}

/** Checks the value of a `--workers` option: a positive integer or 'auto'; undefined passes through. */
export function parseWorkersOption(value: string | undefined): number | 'auto' | undefined {
  if (value === undefined || value === 'auto') return value;
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1) throw new UsageError(`--workers: expected a positive integer or 'auto', got '${value}'`);
  return count;
}
