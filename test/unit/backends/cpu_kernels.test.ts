import test from 'ava';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import { registerCpuKernelFixes } from '../../../src/backends/cpu_kernels.ts';

test.before(async () => {
  registerCpuKernelFixes();
  await tf.setBackend('cpu');
});

function resizeGrad(dy: tf.Tensor4D, imageShape: [number, number, number, number], alignCorners: boolean, halfPixelCenters: boolean): tf.Tensor4D {
  return tf.engine().runKernel(
    'ResizeNearestNeighborGrad',
    { images: tf.zeros(imageShape), dy },
    { alignCorners, halfPixelCenters, size: [dy.shape[1], dy.shape[2]] },
  ) as tf.Tensor4D;
}

test.serial('ResizeNearestNeighborGrad sums dy per source pixel in each image', (t) => {
  // Upsampling 1x2 -> 2x4 by 2: source pixel (0, c) collects dy columns 2c and 2c + 1 of both rows.
  const dy = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8, 10, 20, 30, 40, 50, 60, 70, 80], [2, 2, 4, 1]);
  const dx = tf.tidy(() => resizeGrad(dy, [2, 1, 2, 1], false, false));
  t.deepEqual(Array.from(dx.dataSync()), [1 + 2 + 5 + 6, 3 + 4 + 7 + 8, 10 + 20 + 50 + 60, 30 + 40 + 70 + 80]);
  tf.dispose([dy, dx]);
});

test.serial('ResizeNearestNeighborGrad is the adjoint of the forward resize', (t) => {
  const cases: Array<{ image: [number, number, number, number]; size: [number, number]; alignCorners: boolean; halfPixelCenters: boolean }> = [
    { image: [2, 7, 9, 3], size: [14, 18], alignCorners: false, halfPixelCenters: false },
    { image: [2, 7, 9, 3], size: [13, 20], alignCorners: false, halfPixelCenters: false },
    { image: [2, 8, 8, 2], size: [3, 5], alignCorners: false, halfPixelCenters: false },
    { image: [2, 7, 9, 3], size: [13, 20], alignCorners: true, halfPixelCenters: false },
    { image: [2, 7, 9, 3], size: [13, 20], alignCorners: false, halfPixelCenters: true },
  ];
  for (const c of cases) {
    // <resize(x), w> must equal <x, grad(w)> for any x and w.
    const [forward, adjoint] = tf.tidy(() => {
      const x = tf.randomNormal(c.image, 0, 1, 'float32', 1);
      const w = tf.randomNormal([c.image[0], c.size[0], c.size[1], c.image[3]], 0, 1, 'float32', 2) as tf.Tensor4D;
      const resized = tf.image.resizeNearestNeighbor(x as tf.Tensor4D, c.size, c.alignCorners, c.halfPixelCenters);
      return [tf.sum(tf.mul(resized, w)), tf.sum(tf.mul(x, resizeGrad(w, c.image, c.alignCorners, c.halfPixelCenters)))];
    });
    const label = `${JSON.stringify(c)}: ${forward!.dataSync()[0]} vs ${adjoint!.dataSync()[0]}`;
    t.true(Math.abs(forward!.dataSync()[0]! - adjoint!.dataSync()[0]!) < 1e-3, label);
    tf.dispose([forward!, adjoint!]);
  }
});
