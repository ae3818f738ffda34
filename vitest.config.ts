import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native addons and OpenMP: one process per file, files in sequence (two cores in CI),
    // so op timings and thread counts do not interfere.
    pool: 'forks',
    fileParallelism: false,
    // Fill every new native allocation with NaN: an op that leaves part of its output unwritten fails.
    // TF32 off: the conformance tolerance (1e-4) is float32's, and TF32 rounds inputs to 10 bits.
    // scripts/gpu-check.sh runs the convolution tests once more with CUDNN_RESNET_TF32=1, under
    // test/ops.test.ts's TF32 tolerance.
    env: { CUDNN_RESNET_POISON: '1', CUDNN_RESNET_TF32: process.env.CUDNN_RESNET_TF32 ?? '0' },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
