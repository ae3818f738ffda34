import { amp, models, ops, optim, profile, randn, setNumThreads, sync, tensor, tidy } from '../lib/index.js';
const [model, batch, prec, threads] = [process.argv[2] ?? 'resnet50', Number(process.argv[3] ?? 16), process.argv[4] ?? 'fp32', Number(process.argv[5] ?? 1)];
setNumThreads(threads);
const size = model === 'resnet20' ? 32 : 224;
const net = model === 'resnet20' ? models.cifarResNet({ depth: 20, shortcut: 'B', seed: 1 }) : models.resnet50({ seed: 1 });
const x = randn([batch, 3, size, size], { seed: 9 });
const labels = tensor(Int32Array.from({ length: batch }, (_, i) => (i * 7) % (model === 'resnet20' ? 10 : 1000)), [batch]);
const sgd = new optim.SGD(net.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
const step = () => { tidy(() => { const run = () => ops.softmaxCrossEntropy(net.forward(x), labels).backward(); if (prec === 'bf16') amp.autocast({ dtype: 'bfloat16' }, run); else run(); }); sgd.step(); sgd.zeroGrad(); };
step(); await sync(); step(); await sync();
const p = await profile(() => { step(); }, { byShape: true });
const total = p.busyMs;
console.log(`${model} b${batch} ${prec} ${threads}t: wall ${p.wallMs.toFixed(0)} busy ${total.toFixed(0)} ms`);
// group by op kind too
const kinds = new Map<string, number>();
for (const o of p.ops) { const k = o.op.split(' ')[0]!; kinds.set(k, (kinds.get(k) ?? 0) + o.totalMs); }
console.log([...kinds].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', '));
for (const o of p.ops.slice(0, 40)) console.log(`${o.totalMs.toFixed(1).padStart(8)} ms ${String(o.calls).padStart(3)}x  ${o.op}`);
