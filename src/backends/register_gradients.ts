/**
 * Registers the gradient functions of every tfjs-core op. The `@tensorflow/tfjs-core` entry
 * point registers none (the `@tensorflow/tfjs` union package does it on import), so anything
 * that calls tf.grad / tf.variableGrads imports this module first. The package's exports map
 * does not expose that file to `import`, hence `require`; the file itself is ES module syntax
 * that loads because tsx compiles it, and it registers into the same tfjs-core instance that
 * the package's main entry loads.
 */
import { createRequire } from 'node:module';

createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients');
