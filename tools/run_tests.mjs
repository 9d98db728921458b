#!/usr/bin/env node
// Runs the ava suite with the TAP reporter, echoes its output, and ends with the plain line
// "N passed, N failed[, N skipped]" that CI reads. Extra arguments go to ava (file globs, --match).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const avaBin = new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url);
const child = spawn(process.execPath, [avaBin.pathname, '--tap', ...process.argv.slice(2)], {
  stdio: ['inherit', 'pipe', 'inherit'],
  env: { ...process.env, RLADET_LOG_LEVEL: process.env.RLADET_LOG_LEVEL ?? 'warn' },
});

let passed = 0;
let failed = 0;
let skipped = 0;
const lines = createInterface({ input: child.stdout });
lines.on('line', (line) => {
  process.stdout.write(line + '\n');
  const match = /^(not ok|ok) \d+/.exec(line);
  if (match === null) return;
  if (/# (SKIP|TODO)\b/i.test(line)) skipped += 1;
  else if (match[1] === 'ok') passed += 1;
  else failed += 1;
});

child.on('close', (code, signal) => {
  // A crash outside any test (an uncaught exception, a timeout) leaves no "not ok" line, so it is
  // counted as one failure when the counts would otherwise claim success.
  if ((code !== 0 || signal !== null) && failed === 0) failed = 1;
  const skippedPart = skipped > 0 ? `, ${skipped} skipped` : '';
  process.stdout.write(`${passed} passed, ${failed} failed${skippedPart}\n`);
  process.exit(code ?? 1);
});
