import { type Conv2DBackpropInputAttrs, backend_util, util } from '@tensorflow/tfjs-core';

/**
 * Computes the Conv2DInfo of an NHWC convolution with dilation 1, as both Conv2D gradient
 * kernels need it, and checks that dy has the convolution's output shape.
 *
 * Throws an Error that starts with `kernelName` and names the input as `inputName` when the
 * shapes do not match.
 */
export function computeConv2dGradientInfo(args: {
  kernelName: string;
  inputName: string;
  inputShape: [number, number, number, number];
  filterShape: [number, number, number, number];
  dyShape: number[];
  attrs: Pick<Conv2DBackpropInputAttrs, 'strides' | 'pad' | 'dimRoundingMode'>;
}): backend_util.Conv2DInfo {
  const { kernelName, inputName, inputShape, filterShape, dyShape } = args;
  const { strides, pad, dimRoundingMode } = args.attrs;
  const info = backend_util.computeConv2DInfo(inputShape, filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  if (!util.arraysEqual(dyShape, info.outShape)) {
    throw new Error(
      `${kernelName} on wasm: dy has shape [${dyShape}], expected [${info.outShape}] for ${inputName} [${inputShape}], ` +
        `filter [${filterShape}], strides ${String(strides)} and pad ${JSON.stringify(pad)}`,
    );
  }
  return info;
}
