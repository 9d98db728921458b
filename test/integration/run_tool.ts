import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

/** Exit code and output of a tool run in a child process. */
export interface ToolResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `tools/<tool>` under tsx in a child process, with logging at warn level, and returns its
 * exit code and output. The child is killed after 120 s.
 */
export function runTool(tool: string, args: string[]): ToolResult {
  const result = spawnSync(process.execPath, ['--import', 'tsx', resolve('tools', tool), ...args], {
    encoding: 'utf8',
    env: { ...process.env, RLADET_LOG_LEVEL: 'warn' },
    timeout: 120_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
