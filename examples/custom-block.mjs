// A residual block of your own: subclass nn.Module, register children with addModule and raw
// tensors with addParameter, and it gets PyTorch-style names, state dicts, train/eval and
// dispose() like the built-in blocks. Run: node examples/custom-block.mjs  (EXAMPLE_STEPS=N)
import { nn, ops, optim, randn, tensor, tidy, memory } from 'cudnn-resnet';

const steps = Number(process.env.EXAMPLE_STEPS ?? 10);

// A ResNeXt-style block (Xie et al. 2017): 1x1 reduce, a grouped 3x3 ("cardinality" parallel
// paths in one convolution), 1x1 expand; relu(branch + shortcut). Where the shape changes the
// shortcut is a 1x1 projection, kept here as a bare parameter used through ops.conv2d.
class GroupedBlock extends nn.Module {
  constructor(inChannels, outChannels, { stride = 1, cardinality = 4, seed = 0 } = {}) {
    super();
    const mid = outChannels / 2;
    this.stride = stride;
    this.branch = this.addModule('branch', new nn.Sequential(
      new nn.Conv2d(inChannels, mid, 1, { bias: false, seed }), new nn.BatchNorm2d(mid), new nn.ReLU(),
      new nn.Conv2d(mid, mid, 3, { stride, padding: 1, groups: cardinality, bias: false, seed: seed + 1 }), new nn.BatchNorm2d(mid), new nn.ReLU(),
      new nn.Conv2d(mid, outChannels, 1, { bias: false, seed: seed + 2 }), new nn.BatchNorm2d(outChannels),
    ));
    if (stride !== 1 || inChannels !== outChannels) {
      // He initialization by hand: std sqrt(2 / fan_in).
      this.addParameter('proj', randn([outChannels, inChannels, 1, 1], { seed: seed + 3, std: Math.sqrt(2 / inChannels) }));
    }
  }

  forward(x) {
    // Look the parameter up on each call rather than caching it: Module.to() replaces it.
    const proj = this.parameter('proj');
    const identity = proj ? ops.conv2d(x, proj, { stride: this.stride }) : x;
    return ops.addRelu(this.branch.forward(x), identity);
  }
}

// Stack the blocks into a small network: stem, two stages, pooled features, classifier.
class TinyNet extends nn.Module {
  constructor(classes) {
    super();
    this.stem = this.addModule('stem', new nn.Sequential(new nn.Conv2d(3, 16, 3, { padding: 1, bias: false, seed: 1 }), new nn.BatchNorm2d(16), new nn.ReLU()));
    this.stages = this.addModule('stages', new nn.Sequential(
      new GroupedBlock(16, 32, { seed: 10 }), new GroupedBlock(32, 32, { seed: 20 }), new GroupedBlock(32, 64, { stride: 2, seed: 30 }),
    ));
    this.fc = this.addModule('fc', new nn.Linear(64, classes, { seed: 2 }));
  }

  forward(x) {
    return this.fc.forward(ops.flatten(ops.globalAvgPool(this.stages.forward(this.stem.forward(x)))));
  }
}

const net = new TinyNet(4);
// Names join with dots as in PyTorch, so stateDict() keys line up with a torch port of TinyNet.
const named = net.namedParameters();
for (const [name, p] of named.filter(([name]) => name.startsWith('stages.0.'))) console.log(`param ${name} [${p.shape.join(', ')}]`);
console.log(`${named.length} parameter tensors, ${named.reduce((s, [, p]) => s + p.size, 0)} values, ${net.namedBuffers().length} buffers`);

// A fixed synthetic batch (class = which quadrant is bright), so the loss must go down.
const n = 32;
const pixels = new Float32Array(n * 3 * 16 * 16);
const labels = Int32Array.from({ length: n }, (_, i) => i % 4);
for (let i = 0; i < pixels.length; i++) {
  const img = Math.floor(i / 768), y = Math.floor(i / 16) % 16, x = i % 16;
  pixels[i] = ((y >= 8) * 2 + (x >= 8) === labels[img] ? 1 : 0) + 0.5 * Math.sin(i * 12.9898);
}
const images = tensor(pixels, [n, 3, 16, 16]);
const targets = tensor(labels);
const opt = new optim.SGD(net.parameters(), { lr: 0.1, momentum: 0.5 });
for (let step = 1; step <= steps; step++) {
  const loss = tidy(() => {
    const l = ops.softmaxCrossEntropy(net.forward(images), targets);
    l.backward();
    return l;
  });
  opt.step();
  opt.zeroGrad();
  console.log(`step ${step}: loss ${(await loss.item()).toFixed(4)}`);
  loss.dispose();
}
for (const t of [images, targets]) t.dispose();
opt.dispose();
net.dispose();
console.log(`live tensors at the end: ${memory().numTensors}`);
