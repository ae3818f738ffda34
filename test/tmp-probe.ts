import { ops, profile, randn, setNumThreads, sync, tidy } from '../lib/index.js';
setNumThreads(1);
for (const [N, C, H] of [[128, 16, 32], [16, 256, 56]] as const) {
  const x = tidy(() => ops.conv2d(randn([N, C, H, H], { seed: 1 }), randn([C, C, 1, 1], { seed: 2 })));
  const z = tidy(() => ops.conv2d(randn([N, C, H, H], { seed: 3 }), randn([C, C, 1, 1], { seed: 4 })));
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const xx = x.cast(dtype), zz = z.cast(dtype);
    await sync();
    const res: string[] = [];
    const time = async (name: string, f: () => void) => {
      f(); await sync();
      let best = Infinity;
      for (let i = 0; i < 4; i++) { const p = await profile(() => tidy(f)); best = Math.min(best, p.busyMs); }
      res.push(`${name} ${best.toFixed(2)}`);
    };
    await time('bn', () => { ops.batchNorm2d(xx, { training: true }); });
    await time('bn+relu', () => { ops.batchNorm2d(xx, { training: true, relu: true }); });
    await time('bn+res+relu', () => { ops.batchNorm2d(xx, { training: true, residual: zz, relu: true }); });
    await time('bn, addRelu', () => { ops.addRelu(ops.batchNorm2d(xx, { training: true }), zz); });
    await time('bn, relu', () => { ops.relu(ops.batchNorm2d(xx, { training: true })); });
    console.log(N, C, H, dtype, res.join(' | '));
  }
}
