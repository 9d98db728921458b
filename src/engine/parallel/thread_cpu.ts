import { readFileSync } from 'node:fs';

const SCHEDSTAT = '/proc/thread-self/schedstat';

/**
 * Returns the CPU time the calling thread has used, in seconds, or undefined where the OS does
 * not report it. Linux reports it per thread in /proc/thread-self/schedstat (first field, in
 * nanoseconds). Unlike wall time, it does not grow when other processes take the cores.
 */
export function threadCpuSeconds(): number | undefined {
  try {
    return Number(readFileSync(SCHEDSTAT, 'utf8').split(' ')[0]) / 1e9;
  } catch {
    return undefined;
  }
}
