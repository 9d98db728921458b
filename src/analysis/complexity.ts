import * as tf from '@tensorflow/tfjs-core';

import { setLayerCallObserver } from '../nn/layers.ts';
import type { Module } from '../nn/module.ts';

/**
 * Parameter and multiply-add counts of a model, per module and in total. Multiply-adds are
 * counted for Conv2d and Linear layers during one forward pass on zeros: each output element
 * of a convolution costs inChannels * kernelH * kernelW multiply-adds and each fc output
 * inFeatures, with bias additions, pooling and activations left out. For ResNet-50 at 224x224
 * this gives 4,089,184,256.
 */

export interface ModuleComplexity {
  /** Dotted module path, '' for the model itself. */
  path: string;
  /** Number of dots in the path plus one; 0 for the model itself. */
  depth: number;
  /** Parameter elements of the module and its descendants, trainable or frozen. */
  params: number;
  trainableParams: number;
  /** Conv and fc multiply-adds of the module and its descendants in one forward pass. */
  multiplyAdds: number;
  /** Output elements of the BatchNorm2d and GroupNorm layers of the module and its descendants. */
  normElements: number;
}

export interface ComplexityReport {
  /** Input [height, width]; the pass runs on one image. */
  inputShape: [number, number];
  params: number;
  trainableParams: number;
  multiplyAdds: number;
  normElements: number;
  /** Every module in registration order, starting with the model itself. */
  modules: ModuleComplexity[];
}

/** Figures in the units of the RLA-Net paper's counting script (thop plus its own formatter). */
export interface PaperFigures {
  /** Parameters / 2^20 (printed as "M"). */
  paramsMebi: number;
  /** (Multiply-adds + 2 per normalised element) / 2^30 (printed as "GFLOPs"). */
  operationsGibi: number;
}

/** A model that complexity counting can run: detectors expose forwardDummy, others forward. */
export type CountableModel = Module & ({ forwardDummy(images: tf.Tensor4D): unknown } | { forward(images: tf.Tensor4D): unknown });

/** Label for multiply-adds of layers that are not registered in the model's module tree. */
export const UNREGISTERED_LAYERS = '<unregistered layers>';

function runForward(model: CountableModel, images: tf.Tensor4D): void {
  tf.tidy(() => {
    if ('forwardDummy' in model) {
      model.forwardDummy(images);
    } else {
      tf.dispose(model.forward(images) as tf.TensorContainer);
    }
  });
}

/**
 * Counts the parameters of every module and the multiply-adds of one inference-mode forward
 * pass on a zero image of `inputShape` ([height, width], `inChannels` channels). The model's
 * training mode is restored afterwards.
 */
export function countComplexity(model: CountableModel, inputShape: [number, number], inChannels = 3): ComplexityReport {
  const [height, width] = inputShape;
  const moduleNames = new Map<Module, string>(model.namedModules().map(([name, module]) => [module, name]));
  const multiplyAdds = new Map<string, number>();
  const normElements = new Map<string, number>();

  const wasTraining = model.training;
  const images = tf.zeros([1, height, width, inChannels]) as tf.Tensor4D;
  const previousObserver = setLayerCallObserver((layer, kind, count) => {
    const path = moduleNames.get(layer) ?? UNREGISTERED_LAYERS;
    const totals = kind === 'norm' ? normElements : multiplyAdds;
    totals.set(path, (totals.get(path) ?? 0) + count);
  });
  try {
    model.eval();
    runForward(model, images);
  } finally {
    setLayerCallObserver(previousObserver);
    images.dispose();
    model.train(wasTraining);
  }

  const modules: ModuleComplexity[] = model.namedModules().map(([path, module]) => ({
    path,
    depth: path === '' ? 0 : path.split('.').length,
    params: module.countParameters(),
    trainableParams: module.trainableParameters().reduce((sum, [, variable]) => sum + variable.size, 0),
    multiplyAdds: sumUnder(multiplyAdds, path),
    normElements: sumUnder(normElements, path),
  }));
  for (const [totals, key] of [
    [multiplyAdds, 'multiplyAdds'],
    [normElements, 'normElements'],
  ] as const) {
    const unregistered = totals.get(UNREGISTERED_LAYERS);
    if (unregistered !== undefined) {
      modules.push({ path: UNREGISTERED_LAYERS, depth: 1, params: 0, trainableParams: 0, multiplyAdds: 0, normElements: 0, [key]: unregistered });
    }
  }

  const root = modules[0]!;
  return {
    inputShape: [height, width],
    params: root.params,
    trainableParams: root.trainableParams,
    multiplyAdds: sumAll(multiplyAdds),
    normElements: sumAll(normElements),
    modules,
  };
}

/** Sum of the entries whose path is `path` or lies below it. */
function sumUnder(totals: Map<string, number>, path: string): number {
  let sum = 0;
  for (const [layerPath, count] of totals) {
    if (layerPath === UNREGISTERED_LAYERS) continue;
    if (path === '' || layerPath === path || layerPath.startsWith(`${path}.`)) sum += count;
  }
  return sum;
}

function sumAll(totals: Map<string, number>): number {
  let sum = 0;
  for (const count of totals.values()) sum += count;
  return sum;
}

/**
 * Converts exact counts to the units of the RLA-Net paper's table. Its script (paras_flops.py
 * in the official repository) counts with thop and prints with a formatter that divides by
 * 1024^2 ("M") and 1024^3 ("G"). Adding 2 operations per norm-layer element to the conv and
 * fc multiply-adds reproduces its 4.17 G and 7.79 G for RLA-ResNet-50 and -101, where 4 per
 * element would give 4.19 G and 7.82 G.
 */
export function paperFigures(report: Pick<ComplexityReport, 'params' | 'multiplyAdds' | 'normElements'>): PaperFigures {
  return {
    paramsMebi: report.params / 2 ** 20,
    operationsGibi: (report.multiplyAdds + 2 * report.normElements) / 2 ** 30,
  };
}

function formatInteger(value: number): string {
  return value.toLocaleString('en-US');
}

/** Formats the modules up to `maxDepth` as an aligned text table, followed by the totals. */
export function formatComplexityTable(report: ComplexityReport, maxDepth = 2): string {
  const header = ['module', 'params', 'trainable', 'multiply-adds'];
  const rows = report.modules
    .filter((module) => module.depth >= 1 && module.depth <= maxDepth)
    .map((module) => [
      `${'  '.repeat(module.depth - 1)}${module.path}`,
      formatInteger(module.params),
      formatInteger(module.trainableParams),
      formatInteger(module.multiplyAdds),
    ]);
  rows.push(['total', formatInteger(report.params), formatInteger(report.trainableParams), formatInteger(report.multiplyAdds)]);

  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const formatRow = (row: string[]): string =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  const separator = widths.map((width) => '-'.repeat(width)).join('  ');
  const lines = [formatRow(header), separator, ...rows.slice(0, -1).map(formatRow), separator, formatRow(rows[rows.length - 1]!)];

  const [height, width] = report.inputShape;
  const paper = paperFigures(report);
  lines.push(
    '',
    `input: 1 x ${height} x ${width} (batch x height x width)`,
    `parameters: ${formatInteger(report.params)} (${formatInteger(report.trainableParams)} trainable)`,
    `multiply-adds (conv + fc): ${formatInteger(report.multiplyAdds)} = ${(report.multiplyAdds / 1e9).toFixed(3)} G (10^9)`,
    `norm-layer elements: ${formatInteger(report.normElements)}`,
    `units of the RLA-Net paper's RLA-ResNet rows (its ResNet rows are decimal): params ${paper.paramsMebi.toFixed(2)} M (2^20), ` +
      `FLOPs ${paper.operationsGibi.toFixed(2)} G (2^30, multiply-adds + 2 per norm element)`,
  );
  return lines.join('\n');
}
