import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import _ from 'lodash';

import { ConfigError } from '../utils/errors.ts';
import { writeFileAtomic } from '../utils/fs.ts';
import { closestName } from '../utils/strings.ts';

/**
 * Configs are TypeScript modules whose default export is a plain object. A leaf config
 * imports its base and calls `extend(base, patch)`: objects merge key by key, arrays and
 * scalars replace, and a subtree wrapped in `replace(...)` replaces the base's subtree whole
 * (MMDetection's `_delete_=True`), which is how a leaf drops options of the base. A patch may
 * change a component's `type` and keep the base's other options, as MMDetection's merge
 * does; options that the new component does not accept fail when it is built, naming the key.
 */

const REPLACE = Symbol('rladet.replace');

type Replaced<T> = T & { readonly [REPLACE]: true };

/** Marks `value` to replace the base's value whole in `extend`, instead of merging into it. */
export function replace<T extends object>(value: T): Replaced<T> {
  return Object.assign(Object.create(null) as object, value, { [REPLACE]: true }) as Replaced<T>;
}

/** Deep-partial patch type for `extend`. */
export type Patch<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: Patch<T[K]> | Replaced<NonNullable<T[K]>> }
    : T;

/** Identity function that fixes a config's type; use it for the default export of a config file. */
export function defineConfig<T extends object>(config: T): T {
  return config;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isReplaced(value: unknown): boolean {
  return isPlainObject(value) && (value as { [REPLACE]?: boolean })[REPLACE] === true;
}

function stripMarkers(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripMarkers);
  if (isPlainObject(value)) {
    const result: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) result[key] = stripMarkers(child);
    return result;
  }
  return value;
}

function mergeInto(base: unknown, patch: unknown): unknown {
  if (isReplaced(patch)) return stripMarkers(patch);
  if (!isPlainObject(base) || !isPlainObject(patch)) return stripMarkers(patch);
  const result: Record<string, unknown> = { ...(stripMarkers(base) as Record<string, unknown>) };
  for (const [key, value] of Object.entries(patch)) {
    result[key] = key in result ? mergeInto(result[key], value) : stripMarkers(value);
  }
  return result;
}

/** Returns a new config: `base` with `patch` merged in (see the module comment for the rules). */
export function extend<T extends object>(base: T, patch: Patch<T>): T {
  return mergeInto(base, patch) as T;
}

/** Loads a config module (a `.ts` or `.js` file whose default export is the config) and returns a deep copy. */
export async function loadConfig(path: string): Promise<Record<string, unknown>> {
  const absolute = resolve(path);
  if (!existsSync(absolute)) throw new ConfigError(`config file not found: ${path}`);
  let module: { default?: unknown };
  try {
    module = (await import(pathToFileURL(absolute).href)) as { default?: unknown };
  } catch (error) {
    throw new ConfigError(`config file ${path} failed to load: ${(error as Error).message}`, { cause: error });
  }
  if (!isPlainObject(module.default)) {
    throw new ConfigError(`config file ${path} has no default export object (write 'export default defineConfig({...})')`);
  }
  return _.cloneDeep(stripMarkers(module.default)) as Record<string, unknown>;
}

/** Parses the value of a `--cfg-options key=value`: JSON when it parses (numbers, booleans, arrays, objects), else a string. */
export function parseOverrideValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // MMDetection also accepts bare lists such as a=1,2,3.
    if (text.includes(',') && !text.startsWith('{')) return text.split(',').map(parseOverrideValue);
    return text;
  }
}

/**
 * Applies `key.path=value` overrides in place. A path must lead through existing objects, so
 * only its last key may be new. A typo in an intermediate key is reported with the closest
 * existing key.
 */
export function applyOverrides(config: Record<string, unknown>, overrides: readonly string[]): void {
  for (const override of overrides) {
    const eq = override.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--cfg-options: expected key.path=value, got '${override}'`);
    const path = override.slice(0, eq);
    const value = parseOverrideValue(override.slice(eq + 1));
    const keys = path.split('.');
    let node: unknown = config;
    for (let i = 0; i < keys.length - 1; i++) {
      const key = keys[i]!;
      const next = (node as Record<string, unknown>)[key];
      if (next === null || typeof next !== 'object') {
        const siblings = Object.keys(node as object);
        const hint = closestName(key, siblings);
        throw new ConfigError(
          `--cfg-options ${path}: '${keys.slice(0, i + 1).join('.')}' does not exist in the config` +
            (hint === undefined ? '' : ` (closest: '${keys.slice(0, i).concat(hint).join('.')}')`),
        );
      }
      node = next;
    }
    const last = keys[keys.length - 1]!;
    if (Array.isArray(node)) {
      const index = Number(last);
      if (!Number.isInteger(index) || index < 0 || index >= node.length) {
        throw new ConfigError(`--cfg-options ${path}: index ${last} is out of range for a list of ${node.length}`);
      }
    }
    (node as Record<string, unknown>)[last] = value;
  }
}

/**
 * Rejects option keys that a component does not know, naming the config path, the bad key
 * and the closest known key. Components call it on their options object.
 */
export function checkOptionKeys(path: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const hint = closestName(key, known);
    throw new ConfigError(
      `${path}: unknown option '${key}'${hint === undefined ? '' : ` (did you mean '${hint}'?)`}. Known options: ${known.join(', ')}`,
    );
  }
}

/** Writes the fully resolved config as JSON (the record of what a run used). */
export async function dumpConfig(config: object, path: string): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(config, null, 2) + '\n');
}
