/**
 * Error classes of rladet. Each one sets `name`, so a printed error says which kind it is,
 * and keeps `instanceof` working after transpilation.
 */

export class RladetError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** Invalid configuration: unknown keys, bad values, an override that does not parse. */
export class ConfigError extends RladetError {}

/** Unknown `type` in a registry lookup. */
export class RegistryError extends RladetError {
  constructor(
    message: string,
    readonly registry: string,
    readonly requested: string,
    readonly known: readonly string[],
  ) {
    super(message);
  }
}

/** Invalid input data: annotation files, images, results files. */
export class DataError extends RladetError {}

/** A checkpoint that cannot be read or does not fit the model. */
export class CheckpointError extends RladetError {}

/** Training stopped because a loss became NaN or infinite. */
export class NonFiniteLossError extends RladetError {
  constructor(
    message: string,
    readonly iteration: number,
    readonly losses: Record<string, number>,
  ) {
    super(message);
  }
}
