/**
 * Prints the parameters and conv + fc multiply-adds of the model in a config, per module and
 * in total, like MMDetection's tools/analysis_tools/get_flops.py.
 *
 *   npx tsx tools/get_flops.ts CONFIG [--shape H [W]] [--depth N] [--json] [--backend auto|tensorflow|wasm|cpu]
 *
 * The input size is --shape, else the config's `inputShape`, else 1280 x 800.
 */
import { BACKEND_CHOICES, initBackend, type BackendChoice } from '../src/backends/index.ts';
import { countComplexity, formatComplexityTable, paperFigures, type CountableModel } from '../src/analysis/complexity.ts';
import { loadConfig } from '../src/config/config.ts';
import { CLASSIFIERS, DETECTORS } from '../src/registry/index.ts';
import { ConfigError } from '../src/utils/errors.ts';
import { runMain, UsageError } from '../src/utils/cli.ts';
import '../src/register_all.ts';

const USAGE = `usage: npx tsx tools/get_flops.ts CONFIG [options]

Prints parameters and conv + fc multiply-adds of config.model for one image.

options:
  --shape H [W]    input height and width in pixels (W defaults to H);
                   default: the config's inputShape, else 1280 800
  --depth N        module depth of the table (default 2)
  --json           print one JSON object instead of the table
  --backend NAME   auto (default), tensorflow, wasm or cpu`;

/** Input size of MMDetection's get_flops when no --shape is given: [height, width]. */
const DEFAULT_SHAPE: [number, number] = [1280, 800];

interface Arguments {
  configPath: string;
  shape: [number, number] | undefined;
  depth: number;
  json: boolean;
  backend: BackendChoice;
}

function parsePositiveInteger(flag: string, text: string | undefined): number {
  const value = Number(text);
  if (text === undefined || !Number.isInteger(value) || value < 1) {
    throw new UsageError(`${flag}: expected a positive integer, got ${text === undefined ? 'nothing' : `'${text}'`}`);
  }
  return value;
}

function parseArguments(argv: readonly string[]): Arguments {
  const positionals: string[] = [];
  let shape: [number, number] | undefined;
  let depth = 2;
  let json = false;
  let backend: BackendChoice = 'auto';

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (arg === '--json') {
      json = true;
    } else if (arg === '--depth') {
      depth = parsePositiveInteger('--depth', argv[++i]);
    } else if (arg === '--backend') {
      const choice = argv[++i];
      if (!BACKEND_CHOICES.includes(choice as BackendChoice)) {
        throw new UsageError(`--backend: expected one of ${BACKEND_CHOICES.join(', ')}, got '${choice ?? ''}'`);
      }
      backend = choice as BackendChoice;
    } else if (arg === '--shape') {
      const height = parsePositiveInteger('--shape', argv[++i]);
      // The width is optional: take the next argument only when it is a number.
      const next = argv[i + 1];
      const width = next !== undefined && /^\d+$/.test(next) ? parsePositiveInteger('--shape', argv[++i]) : height;
      shape = [height, width];
    } else if (arg.startsWith('--')) {
      throw new UsageError(`unknown option '${arg}'`);
    } else {
      positionals.push(arg);
    }
  }
  if (positionals.length !== 1) {
    throw new UsageError(`expected one CONFIG path, got ${positionals.length === 0 ? 'none' : positionals.join(' ')}`);
  }
  return { configPath: positionals[0]!, shape, depth, json, backend };
}

function inputShapeOf(config: Record<string, unknown>, configPath: string): [number, number] {
  const value = config['inputShape'];
  if (value === undefined) return DEFAULT_SHAPE;
  const valid = Array.isArray(value) && value.length === 2 && value.every((size) => Number.isInteger(size) && size > 0);
  if (!valid) throw new ConfigError(`${configPath}: inputShape must be [height, width] in pixels, got ${JSON.stringify(value)}`);
  return value as [number, number];
}

function buildModel(config: Record<string, unknown>, configPath: string): CountableModel {
  const modelConfig = config['model'] as { type?: unknown } | undefined;
  if (modelConfig === undefined || modelConfig === null || typeof modelConfig.type !== 'string') {
    throw new ConfigError(`${configPath}: config.model with a 'type' is missing`);
  }
  const registry = CLASSIFIERS.has(modelConfig.type) ? CLASSIFIERS : DETECTORS;
  return registry.build(modelConfig as { type: string }, 'model') as CountableModel;
}

async function main(): Promise<void> {
  const args = parseArguments(process.argv.slice(2));
  const config = await loadConfig(args.configPath);
  const shape = args.shape ?? inputShapeOf(config, args.configPath);
  await initBackend(args.backend);

  const model = buildModel(config, args.configPath);
  try {
    const report = countComplexity(model, shape);
    if (!args.json) {
      process.stdout.write(`${formatComplexityTable(report, args.depth)}\n`);
      return;
    }
    const paper = paperFigures(report);
    const output = {
      config: args.configPath,
      inputShape: report.inputShape,
      params: report.params,
      trainableParams: report.trainableParams,
      flops: report.multiplyAdds,
      flopsUnit: 'multiply-adds',
      normElements: report.normElements,
      paper: {
        note: "units of the RLA-Net paper's RLA-ResNet rows; its ResNet rows use decimal units",
        params: Number(paper.paramsMebi.toFixed(2)),
        paramsUnit: 'M = 2^20 parameters',
        flops: Number(paper.operationsGibi.toFixed(2)),
        flopsUnit: 'G = 2^30 operations: multiply-adds + 2 per norm-layer element',
      },
      modules: report.modules
        .filter((module) => module.depth >= 1 && module.depth <= args.depth)
        .map(({ path, params, trainableParams, multiplyAdds }) => ({ path, params, trainableParams, flops: multiplyAdds })),
    };
    process.stdout.write(`${JSON.stringify(output, null, 2)}\n`);
  } finally {
    model.dispose();
  }
}

runMain(main, USAGE);
