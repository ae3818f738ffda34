// Exports a ResNet to ONNX and serves it from an HTTP handler with onnxruntime-node, the
// runtime a Node server (or onnxruntime-web in a browser, or Python) would use in production;
// then checks that onnxruntime's classes and logits are the library's own.
// Run: node examples/serve-onnx.mjs   (onnxruntime-node is a devDependency of this repository;
// in your own project: npm install onnxruntime-node)
//   EXAMPLE_REQUESTS=N  classify requests (default 8), EXAMPLE_BATCH=B images each (default 16)
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportOnnx, models, noGrad, tensor, tidy } from 'cudnn-resnet';

let ort;
try {
  ort = (await import('onnxruntime-node')).default;
} catch {
  console.error('onnxruntime-node is not installed: npm install onnxruntime-node');
  process.exit(1);
}

const requests = Number(process.env.EXAMPLE_REQUESTS ?? 8);
const batch = Number(process.env.EXAMPLE_BATCH ?? 16);
const IMAGE = [3, 32, 32];
const PER_IMAGE = IMAGE[0] * IMAGE[1] * IMAGE[2];

// 1. Export. Untrained weights keep the example self-contained: a trained network comes from
// loadSafetensors or loadTorchStateDict and model.loadStateDict, or from a training run's
// checkpoint with `cudnn-resnet export --checkpoint ... --onnx model.onnx`.
const model = models.cifarResNet({ depth: 20, seed: 1 });
const dir = mkdtempSync(join(tmpdir(), 'serve-onnx-'));
const file = join(dir, 'resnet20.onnx');
await exportOnnx(model, file, { inputShape: [1, ...IMAGE] });       // any batch size at run time
console.log(`exported ${file} (${(statSync(file).size / 1e6).toFixed(2)} MB)`);

// 2. Serve it. The session runs on onnxruntime's own threads; run() returns a promise.
const session = await ort.InferenceSession.create(file);
const argmax = (v) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);

const server = createServer(async (req, res) => {
  const send = (status, body) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  if (req.method === 'GET' && req.url === '/health') return send(200, { ok: true });
  if (req.method !== 'POST' || req.url !== '/classify') return send(404, { error: 'GET /health or POST /classify' });
  // The body is raw float32 NCHW images (already normalized), any number of 3x32x32 images.
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  if (body.length === 0 || body.length % (4 * PER_IMAGE) !== 0) {
    return send(400, { error: `expected a whole number of float32 ${IMAGE.join('x')} images, got ${body.length} bytes` });
  }
  const pixels = new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length));
  const n = pixels.length / PER_IMAGE;
  const { output } = await session.run({ input: new ort.Tensor('float32', pixels, [n, ...IMAGE]) });
  const logits = Array.from({ length: n }, (_, i) => Array.from(output.data.subarray(i * 10, i * 10 + 10)));
  send(200, { classes: logits.map(argmax), logits });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));  // loopback, any free port
const base = `http://127.0.0.1:${server.address().port}`;
console.log(`listening on ${base}`);

// 3. The demo: classify batches over HTTP and compare with the library's own forward.
let agree = 0;
let total = 0;
let maxDiff = 0;
for (let r = 0; r < requests; r++) {
  const images = new Float32Array(batch * PER_IMAGE).map((_, i) => Math.sin(0.37 * i + r));
  const reply = await fetch(`${base}/classify`, { method: 'POST', body: images }).then((res) => res.json());
  const mine = noGrad(() => tidy(() => model.eval().forward(tensor(images, [batch, ...IMAGE]))));
  const values = await mine.data();
  mine.dispose();
  for (let i = 0; i < batch; i++) {
    const row = values.subarray(i * 10, i * 10 + 10);
    if (argmax(row) === reply.classes[i]) agree++;
    for (let k = 0; k < 10; k++) maxDiff = Math.max(maxDiff, Math.abs(row[k] - reply.logits[i][k]));
    total++;
  }
}
console.log(`onnxruntime and cudnn-resnet agree on ${agree} of ${total} images (largest logit difference ${maxDiff.toExponential(1)})`);
const bad = await fetch(`${base}/classify`, { method: 'POST', body: new Uint8Array(10) }).then((res) => res.json());
console.log(`a malformed body gets 400: ${bad.error}`);

await new Promise((resolve) => server.close(resolve));
await session.release();
model.dispose();
rmSync(dir, { recursive: true, force: true });
console.log('server closed');
