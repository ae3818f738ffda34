/**
 * Every public function checks its arguments before any native work and throws an error a user
 * can act on: TypeError for wrong types, RangeError for bad sizes and shapes, Error for
 * disposed tensors and unavailable backends. Native failures carry .code, .op and .backend.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Tensor, data, defaultBackend, emptyCache, models, nn, ops, optim, randn, seed, setNumThreads, setTf32, sync, tensor, train, zeros, ones, memory } from '../lib/index.js';
import { bindingOf } from '../lib/backend/load.js';
import { defaultCase } from './helpers.js';

// On the default backend (cuda where a GPU is usable), made once the tests that need one run.
let x: Tensor;
let w: Tensor;
beforeAll(() => {
  if (!defaultCase.available) return;
  x = randn([2, 3, 8, 8], { seed: 1 });
  w = randn([4, 3, 3, 3], { seed: 2 });
});
afterAll(() => {
  x?.dispose();
  w?.dispose();
});

describe('the backend switches and the random generators', () => {
  test('check their arguments like every function', () => {
    expect(() => setNumThreads(0)).toThrow(new RangeError('setNumThreads: expected n to be an integer >= 1, got 0'));
    expect(() => setNumThreads('2' as never)).toThrow(new TypeError("setNumThreads: expected n to be an integer, got '2'"));
    // Checked before the CUDA backend is looked for, so the same error with or without a GPU.
    expect(() => setTf32('yes' as never)).toThrow(new TypeError("setTf32: expected enabled to be a boolean, got 'yes'"));
    expect(() => seed(0.5)).toThrow(new RangeError('seed: expected value to be an integer >= -9007199254740991, got 0.5'));
    expect(() => new data.Rng(2 ** 53)).toThrow(new RangeError('Rng: expected seed to be an integer >= -9007199254740991, got 9007199254740992'));
  });
});

describe.skipIf(!defaultCase.available)('argument errors name the op and the shapes', () => {
  test('wrong types', () => {
    expect(() => ops.conv2d(null as never, w)).toThrow(new TypeError('conv2d: expected input to be a Tensor, got null'));
    expect(() => ops.conv2d(x, [1, 2] as never)).toThrow(TypeError);
    expect(() => ops.relu({ shape: [2] } as never)).toThrow(/relu: expected input to be a Tensor/);
    expect(() => ops.conv2d(x, w, { stride: '2' } as never)).toThrow(/conv2d: expected stride to be an integer/);
    expect(() => ops.conv2d(x, w, 5 as never)).toThrow(/expected an options object/);
    expect(() => ops.conv2d(x, w, { strides: 2 } as never)).toThrow(/unknown option 'strides'/);
    expect(() => ops.batchNorm2d(x, { training: 'yes' } as never)).toThrow(TypeError);
    expect(() => ops.softmaxCrossEntropy(randn([2, 3]), 'ab' as never)).toThrow(TypeError);
  });

  test('wrong ranks and shapes', () => {
    const x3 = randn([3, 8, 8]);
    expect(() => ops.conv2d(x3, w)).toThrow(new RangeError('conv2d: expected input of shape [N, C, H, W], got [3, 8, 8]'));
    const w5 = randn([4, 5, 3, 3]);
    expect(() => ops.conv2d(x, w5)).toThrow(/conv2d: expected weight of shape \[O, C\/groups, kH, kW\] with C\/groups = 3, got \[4, 5, 3, 3\]/);
    expect(() => ops.conv2d(x, w, { groups: 2 })).toThrow(/divisible by groups = 2/);
    expect(() => ops.conv2d(x, randn([4, 3, 11, 11]))).toThrow(/larger than the padded input/);
    expect(() => ops.add(randn([2, 3]), randn([3, 2]))).toThrow(/add: expected tensors of the same shape.*\[2, 3\].*\[3, 2\]/);
    expect(() => ops.linear(randn([2, 5]), randn([3, 4]))).toThrow(/linear: expected weight of shape \[out, in\] with in = 5, got \[3, 4\]/);
    expect(() => ops.softmaxCrossEntropy(randn([2, 3]), [0])).toThrow(/expected 2 labels/);
    expect(() => ops.batchNorm2d(x, { weight: ones([4]), training: true })).toThrow(/expected weight of shape \[C\] with C = 3, got \[4\]/);
    expect(() => ops.maxPool2d(x, { kernel: 3, padding: 2 })).toThrow(/padding .* at most half the kernel/);
    expect(() => ops.maxPool2d(x, { kernel: 9 })).toThrow(RangeError);
    expect(() => ops.flatten(randn([5]))).toThrow(RangeError);
    x3.dispose();
    w5.dispose();
  });

  test('negative, fractional, NaN and huge sizes', () => {
    expect(() => ops.conv2d(x, w, { stride: 0 })).toThrow(new RangeError('conv2d: expected stride to be an integer >= 1, got 0'));
    expect(() => ops.conv2d(x, w, { padding: -1 })).toThrow(RangeError);
    expect(() => ops.conv2d(x, w, { dilation: 1.5 })).toThrow(RangeError);
    expect(() => ops.conv2d(x, w, { stride: Number.NaN })).toThrow(RangeError);
    expect(() => ops.conv2d(x, w, { padding: [1, 2, 3] as never })).toThrow(TypeError);
    expect(() => zeros([2, -3])).toThrow(RangeError);
    expect(() => zeros([2.5])).toThrow(RangeError);
    expect(() => zeros([Number.NaN])).toThrow(RangeError);
    expect(() => zeros([2 ** 20, 2 ** 20])).toThrow(/more than the .* supported/);
    expect(() => zeros('3' as never)).toThrow(TypeError);
    expect(() => tensor([1, 2, 3], [2, 2])).toThrow(/3 values do not fill shape \[2, 2\]/);
    expect(() => tensor([1, 'a' as never])).toThrow(TypeError);
    expect(() => tensor([1.5], [1], { dtype: 'int32' })).toThrow(TypeError);
    expect(() => ops.batchNorm2d(x, { training: true, eps: 0 })).toThrow(RangeError);
    // eps is a float32 in the backends: 1e308 and 1e-50 are refused here, where they used to
    // reach the native check after the default weight and bias were made (two leaked buffers).
    const buffers = memory().backends[x.backend]!.buffers;
    expect(() => ops.batchNorm2d(x, { training: true, eps: 1e308 })).toThrow(/batchNorm2d: expected eps to be a finite number in \[1\.1754943508222875e-38, 3\.4028234663852886e\+38\], got 1e\+308/);
    expect(() => ops.batchNorm2d(x, { training: true, eps: 1e-50 })).toThrow(RangeError);
    expect(memory().backends[x.backend]!.buffers).toBe(buffers);
    expect(() => ops.batchNorm2d(x, { training: true, momentum: 2 })).toThrow(RangeError);
    expect(() => ops.softmaxCrossEntropy(randn([2, 3]), [0, 3])).toThrow(/label 3 at index 1 is not a class index in \[0, 3\)/);
    expect(() => ops.softmaxCrossEntropy(randn([2, 3]), [0, 1], { labelSmoothing: 1 })).toThrow(RangeError);
  });

  test('dtypes and backends', () => {
    const labels = tensor(Int32Array.from([1, 2]));
    expect(() => ops.relu(labels as never)).toThrow(new TypeError('relu: expected input to be float32, got int32'));
    expect(() => tensor([1], [1], { backend: 'tpu' as never })).toThrow(/backend must be one of 'cpu', 'cuda'/);
    const f = randn([2]);
    expect(() => { f.requiresGrad = 1 as never; }).toThrow(new TypeError('requiresGrad: expected the value to be a boolean, got 1 of type number'));
    expect(() => { labels.requiresGrad = true; }).toThrow(new TypeError('requiresGrad: only float32 tensors have gradients, this is int32'));
    expect(() => { f.grad = randn([3]); }).toThrow(/grad: expected a float32 tensor of shape \[2\]/);
    expect(() => { f.grad = 5 as never; }).toThrow(new TypeError('grad: expected a Tensor or null, got 5 of type number'));
    labels.dispose();
    f.dispose();
  });

  test('disposed tensors are errors, not use-after-free', () => {
    const t = randn([2, 3, 8, 8]);
    t.dispose();
    expect(() => ops.conv2d(t, w)).toThrow(/conv2d: input \(shape \[2, 3, 8, 8\]\) is disposed/);
    expect(() => ops.relu(t)).toThrow(/disposed/);
    const p = randn([3], { requiresGrad: true });
    const opt = new optim.SGD([p], { lr: 0.1 });
    p.grad = ones([3]);
    p.dispose();
    expect(() => opt.step()).toThrow(/disposed/);
  });

  test('optimizer options', () => {
    const p = randn([3], { requiresGrad: true });
    expect(() => new optim.SGD([p], {} as never)).toThrow(/lr option is required/);
    expect(() => new optim.SGD([p], { lr: -1 })).toThrow(RangeError);
    expect(() => new optim.SGD([p], { lr: 0.1, nesterov: true })).toThrow(/Nesterov momentum needs momentum > 0/);
    expect(() => new optim.SGD([randn([2])], { lr: 0.1 })).toThrow(/requiresGrad = true/);
    expect(() => new optim.SGD([p, p], { lr: 0.1 })).toThrow(/more than once/);
    expect(() => new optim.SGD(5 as never, { lr: 0.1 })).toThrow(TypeError);
    p.dispose();
  });

  test('autograd misuse', () => {
    const a = randn([2, 3], { requiresGrad: true });
    const y = ops.relu(a);
    expect(() => y.backward()).toThrow(/a gradient is needed for a non-scalar tensor/);
    expect(() => y.backward([1, 2] as never)).toThrow(new TypeError('backward: expected grad to be a Tensor, got [1, 2]'));
    const wrong = randn([3, 2]);
    const be = defaultBackend();
    expect(() => y.backward(wrong)).toThrow(new RangeError(`backward: expected grad to be a float32 tensor of shape [2, 3] on ${be}, got float32 [3, 2] on ${be}`));
    wrong.dispose();
    expect(() => randn([1]).backward()).toThrow(/does not require grad/);
    const loss = ops.softmaxCrossEntropy(y, [0, 1]);
    loss.backward();
    expect(() => loss.backward()).toThrow(/already freed/);
    for (const t of [a, y, loss]) t.dispose();
  });
});

// Found by the boundary fuzzer (test/fuzz/boundary.ts): each of these was an engine error
// ("Cannot read private member", "Invalid typed array length"), a leak, or minutes of work.
describe.skipIf(!defaultCase.available)('odd arguments get the library\'s own errors and leave nothing allocated', () => {
  test('a Proxy of a tensor or an object made from Tensor.prototype is not a tensor', async () => {
    const t = randn([2, 3]);
    await sync();
    const before = memory();
    const forged = Object.assign(Object.create(Tensor.prototype) as object, { shape: [2, 3], dtype: 'float32', backend: 'cpu', _buf: t._buf });
    for (const fake of [new Proxy(t, {}), forged]) {
      expect(() => ops.relu(fake as Tensor)).toThrow(/relu: expected input to be a Tensor, got an object/);
      expect(() => ops.add(t, fake as Tensor)).toThrow(/add: expected b to be a Tensor/);
    }
    // The ops used to allocate their output, then fail on the private fields: one tensor leaked per call.
    expect(memory().numTensors).toBe(before.numTensors);
    t.dispose();
  });

  test('a wrong requiresGrad is refused before the tensor is made', () => {
    const before = memory().numTensors;
    expect(() => zeros([2], { requiresGrad: 'yes' as never })).toThrow(/zeros: expected requiresGrad to be a boolean/);
    expect(() => randn([2], { requiresGrad: 1 as never })).toThrow(TypeError);
    expect(() => tensor(Int32Array.of(1), [1], { requiresGrad: true })).toThrow(/only float32 tensors can require grad/);
    expect(memory().numTensors).toBe(before);
  });

  test('messages stay short whatever the value: a sparse array of length 2^32 - 1 is not printed element by element', () => {
    const started = performance.now();
    expect(() => zeros(new Array(2 ** 32 - 1))).toThrow(/zeros: shapes of rank above 5 are not supported, got \[, , , , , , , , … \(4294967295 elements\)\]/);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(() => tensor([1], [1], { backend: 'x'.repeat(1000) as never })).toThrow(/got 'x{80}…' \(1000 characters\)/);
    expect(() => tensor([1, 2], null as never)).toThrow(/tensor: expected shape to be an array of integers, got null/);
  });

  test('arrays of 2^32 - 1 holes fail at their first element, in milliseconds (forEach and spread walked them all)', () => {
    const holes = () => new Array(2 ** 32 - 1) as never;
    const started = performance.now();
    expect(() => tensor(holes())).toThrow(/tensor: values\[0\] is undefined of type undefined, not a number/);
    expect(() => new optim.SGD(holes(), { lr: 0.1 })).toThrow(/SGD: params\[0\] is undefined/);
    expect(() => train.renderChart(holes(), { title: 't', xLabel: 'x', yLabel: 'y' })).toThrow(/renderChart: expected series\[0\] to be an object \{name, points\}, got undefined/);
    expect(() => train.stepSchedule({ lr: 0.1, milestones: holes() })).toThrow(/stepSchedule: expected milestones\[0\] to be a number/);
    expect(() => new models.ResNet({ block: 'basic', layers: holes(), widths: holes(), stem: 'cifar' })).toThrow(/ResNet: expected layers\[0\] to be an integer/);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(() => new data.Rng(1n as never)).toThrow(/Rng: expected seed to be an integer, got 1 of type bigint/);
  });

  test('options must be plain objects: a Map or a Date with no own keys is not {}', () => {
    const started = performance.now();
    expect(() => models.resnet50(new Map() as never)).toThrow(/resnet50: expected an options object, got an object \(Map\)/);
    expect(() => ops.conv2d(x, w, new Date() as never)).toThrow(/conv2d: expected an options object, got an object \(Date\)/);
    // Refused before a ResNet-50 is built.
    expect(performance.now() - started).toBeLessThan(500);
  });

  test('values that cannot become strings still get a message', () => {
    expect(() => emptyCache(Object.create(null))).toThrow(/emptyCache: backend must be one of 'cpu', 'cuda', 'cuda:N' \(N a GPU index\), got an object \(Object\)/);
    expect(() => { new data.Rng(1).state = [1, 2, 3, Symbol('s') as never]; }).toThrow(/Rng.state: expected the 4 or 5 numbers/);
  });

  test('sizes beyond what can be allocated are refused before anything is built', () => {
    const before = memory().numTensors;
    expect(() => randn([2 ** 33])).toThrow(/randn: expected shape\[0\] to be an integer in \[1, 2147483647\], got 8589934592/);
    expect(() => randn([2 ** 17, 2 ** 16])).toThrow(/randn: shape \[131072, 65536\] has 8589934592 elements, more than the 4294967296 supported/);
    expect(() => new nn.Conv2d(1, 2, [2 ** 30 - 1, 2 ** 30 - 1])).toThrow(/Conv2d: weight \[2, 1, 1073741823, 1073741823\] has/);
    expect(() => models.resnet18({ numClasses: 2 ** 40 })).toThrow(/ResNet: fc.weight \[1099511627776, 512\] has/);
    expect(() => models.cifarResNet({ depth: 6 * 2 ** 40 + 2 })).toThrow(/cifarResNet: expected depth to be an integer in \[8, 6002\]/);
    // A block refused after its first layers were made frees them.
    expect(() => new nn.BasicBlock(4, 2, { shortcut: 'A' })).toThrow(/shortcut 'A' pads channels and cannot reduce them/);
    expect(() => new nn.BasicBlock(1, 2 ** 16)).toThrow(/Conv2d: weight \[65536, 65536, 3, 3\] has/);
    expect(memory().numTensors).toBe(before);
  });
});

describe.skipIf(!defaultCase.available)('failures during execution', () => {
  test('an out-of-range label in an int32 tensor rejects the next sync point with .code, .op, .backend', async () => {
    const logits = randn([2, 3]);
    const labels = tensor(Int32Array.from([0, 7]));
    const loss = ops.softmaxCrossEntropy(logits, labels);
    const err = await loss.data().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    // On the default backend: cuda where a GPU is usable (the kernel records the label, the sync
    // point reports it), else cpu. Both name the op with its shapes.
    expect(err).toMatchObject({ code: 'ERR_LABEL_OUT_OF_RANGE', backend: defaultBackend() });
    expect((err as { op: string }).op).toBe('softmaxCrossEntropy [2, 3] [2]');
    expect((err as Error).message).toMatch(/label 7 at row 1 is outside \[0, 3\)/);
    // The failure is reported once; the library keeps working.
    await sync();
    const ok = ops.relu(tensor([-1, 2]));
    expect(Array.from(await ok.data())).toEqual([0, 2]);
    for (const t of [logits, labels, loss, ok]) t.dispose();
  });

  test('a tensor of another copy of the library is refused with a message that says so', async () => {
    // dist/ (built by pretest) is a second copy: another Tensor class over the same addon.
    const other = (await import(pathToFileURL(join(import.meta.dirname, '..', 'dist', 'index.js')).href)) as typeof import('../lib/index.js');
    const t = other.randn([2, 3], { backend: x.backend });
    expect(() => ops.relu(t as unknown as Tensor)).toThrow(new TypeError(
      'relu: expected input to be a Tensor, got a Tensor of another copy of cudnn-resnet (two versions of the package are loaded); use one copy',
    ));
    t.dispose();
  });

  test('the native layer refuses values that are not live handles of its own instance', () => {
    // The TypeScript layer never passes these; the fuzzer (test/fuzz/native-targets.ts) also
    // tries forged handles, proxies and handles of a second addon instance on every function.
    const b = bindingOf(defaultBackend());
    for (const value of [{}, 3, null]) {
      expect(() => b.relu(value as never)).toThrow(new TypeError('relu: expected input to be a NativeBuffer of this addon instance'));
    }
    const h = b.upload(new Float32Array(6), [2, 3]);
    b.release(h);
    expect(() => b.relu(h)).toThrow(new Error('relu: input was released (the tensor is disposed)'));
  });

  test('the native layer uses floor division for output sizes: a kernel larger than the padded input is refused', () => {
    // (2 - 3) / 2 truncates to 0 in C++, which would make a 1x1 output; PyTorch's floor gives 0.
    const b = bindingOf(defaultBackend());
    const xb = b.upload(new Float32Array(4), [1, 1, 2, 2]);
    const wb = b.upload(new Float32Array(9), [1, 1, 3, 3]);
    expect(() => b.conv2dForward(xb, wb, null, [2, 2], [0, 0], [1, 1], 1)).toThrow(RangeError);
    expect(() => b.maxPool2dForward(xb, [3, 3], [2, 2], [0, 0])).toThrow(RangeError);
    expect(() => b.avgPool2dForward(xb, [3, 3], [2, 2], [0, 0])).toThrow(RangeError);
    b.release(xb);
    b.release(wb);
  });

  test('a convolution whose output would exceed 2^34 elements is refused, not allocated with an overflowed size (was a segfault)', () => {
    // Padding 2^30 - 1 makes a [1, 1, 2^31, 2^31] output: 2^62 floats, whose byte count wrapped
    // to 0 in the native layer, so the convolution wrote past a tiny buffer.
    const x1 = randn([1, 1, 2, 2]);
    const w1 = randn([1, 1, 1, 1]);
    expect(() => ops.conv2d(x1, w1, { padding: 2 ** 30 - 1 })).toThrow(/conv2d: output \[1, 1, 2147483648, 2147483648\] has .* elements, more than the 17179869184 supported/);
    const b = bindingOf(defaultBackend());
    expect(() => b.conv2dForward(x1._buf!, w1._buf!, null, [1, 1], [2 ** 30 - 1, 2 ** 30 - 1], [1, 1], 1)).toThrow(RangeError);
    // The backward ops take the input or weight shape as an argument: bounded the same way.
    const dy = b.upload(new Float32Array(1), [1, 1, 1, 1]);
    expect(() => b.conv2dBackwardData(dy, w1._buf!, [1, 1, 2 ** 31 - 1, 2 ** 31 - 1], [2 ** 31 - 1, 2 ** 31 - 1], [0, 0], [1, 1], 1)).toThrow(RangeError);
    expect(() => b.conv2dBackwardWeights(x1._buf!, dy, [1, 1, 2 ** 31 - 1, 2 ** 31 - 1], false, [1, 1], [2 ** 30 - 1, 2 ** 30 - 1], [1, 1], 1)).toThrow(RangeError);
    b.release(dy);
    x1.dispose();
    w1.dispose();
  });

  test('training batch norm needs more than one value per channel, in the native layer too (cuDNN divided by N·H·W - 1 = 0)', () => {
    const b = bindingOf(defaultBackend());
    const one = b.upload(Float32Array.of(1, 2, 3), [1, 3, 1, 1]);
    const gamma = b.fill([3], 1, 'float32');
    const beta = b.fill([3], 0, 'float32');
    expect(() => b.batchNormForwardTraining(one, gamma, beta, null, null, 0.1, 1e-5))
      .toThrow(new RangeError('batchNormForwardTraining: training needs more than one value per channel (input [1, 3, 1, 1])'));
    const x1 = tensor(Float32Array.of(1, 2, 3), [1, 3, 1, 1]);
    expect(() => ops.batchNorm2d(x1, { training: true })).toThrow(/batchNorm2d: training needs more than one value per channel, got input \[1, 3, 1, 1\]/);
    for (const h of [one, gamma, beta]) b.release(h);
    x1.dispose();
  });

  test('an int32 fill value outside the int32 range is refused (converting it was undefined behaviour)', () => {
    const b = bindingOf(defaultBackend());
    expect(() => b.fill([2], 1e300, 'int32')).toThrow(/fill: expected value to be an integer in the int32 range/);
    expect(() => b.fill([2], 0.5, 'int32')).toThrow(TypeError);
    const ok = b.fill([2], -(2 ** 31), 'int32');
    expect(Array.from(b.downloadSync(ok))).toEqual([-(2 ** 31), -(2 ** 31)]);
    b.release(ok);
  });
});
