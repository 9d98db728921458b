import { RegistryError } from '../utils/errors.ts';
import { getLogger } from '../utils/logger.ts';
import { closestName } from '../utils/strings.ts';

const logger = getLogger('registry');

/** A config for a registered component: its registered `type` plus the component's options. */
export interface ComponentConfig {
  type: string;
}

/** Builds a component from its options; `path` is where its config sits, for error messages. */
type Factory<T> = (options: never, path: string) => T;

interface Entry<T> {
  factory: Factory<T>;
  /** The canonical name when this entry was registered as an alias. */
  aliasOf?: string;
}

/**
 * A table from `type` names to factories, like MMDetection's registries. Names are explicit
 * strings (never `constructor.name`, which bundlers rename). Aliases resolve to the canonical
 * name with a one-time warning, so that configs written for MMDetection (`RLA_ResNet`) still work.
 */
export class Registry<T> {
  private readonly entries = new Map<string, Entry<T>>();

  constructor(readonly name: string) {}

  register<O>(type: string, factory: (options: O, path: string) => T, options: { aliases?: readonly string[] } = {}): void {
    if (this.entries.has(type)) {
      throw new RegistryError(`${this.name}: type '${type}' is already registered`, this.name, type, this.list());
    }
    this.entries.set(type, { factory: factory as Factory<T> });
    for (const alias of options.aliases ?? []) {
      if (this.entries.has(alias)) {
        throw new RegistryError(`${this.name}: alias '${alias}' is already registered`, this.name, alias, this.list());
      }
      this.entries.set(alias, { factory: factory as Factory<T>, aliasOf: type });
    }
  }

  has(type: string): boolean {
    return this.entries.has(type);
  }

  /** Canonical registered names, sorted (aliases left out). */
  list(): string[] {
    return [...this.entries.entries()]
      .filter(([, entry]) => entry.aliasOf === undefined)
      .map(([name]) => name)
      .sort();
  }

  /**
   * Builds the component named by `config.type`, passing the remaining keys as its options.
   * `path` is where the config sits (e.g. `model.backbone`); the factory receives it for its
   * own error messages.
   */
  build<C extends ComponentConfig>(config: C, path: string = this.name): T {
    if (config === null || typeof config !== 'object') {
      throw new RegistryError(
        `${path}: expected a config object with a 'type' key for registry ${this.name}, got ${JSON.stringify(config)}`,
        this.name,
        String(config),
        this.list(),
      );
    }
    const { type, ...options } = config as ComponentConfig & Record<string, unknown>;
    if (typeof type !== 'string') {
      throw new RegistryError(
        `${path}: missing 'type' (registry ${this.name} has: ${this.list().join(', ')})`,
        this.name,
        String(type),
        this.list(),
      );
    }
    const entry = this.entries.get(type);
    if (entry === undefined) {
      const known = this.list();
      const closest = closestName(type, known);
      const hint = closest === undefined ? '' : ` Did you mean '${closest}'?`;
      throw new RegistryError(
        `${path}.type: '${type}' is not registered in ${this.name}.${hint} Registered: ${known.join(', ') || '(none)'}`,
        this.name,
        type,
        known,
      );
    }
    if (entry.aliasOf !== undefined) {
      logger.warnOnce(`${this.name}:${type}`, `${path}.type: '${type}' is an alias of '${entry.aliasOf}'; use '${entry.aliasOf}'`);
    }
    return entry.factory(options as never, path);
  }
}
