// Serves a ResNet over HTTP and shows that the server stays responsive while it classifies:
// the network runs on the backend's native queue, and only `await logits.data()` waits, so
// the event loop keeps answering other requests. Run: node examples/http-inference.mjs
//   EXAMPLE_REQUESTS=N  classify requests in the burst (default 24), EXAMPLE_BATCH=B images each (default 16)
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { models, noGrad, tensor, tidy } from 'cudnn-resnet';

const requests = Number(process.env.EXAMPLE_REQUESTS ?? 24);
const batch = Number(process.env.EXAMPLE_BATCH ?? 16);
const IMAGE = [3, 32, 32];
const PER_IMAGE = IMAGE[0] * IMAGE[1] * IMAGE[2];

// Untrained weights keep the example self-contained; load real ones with loadSafetensors and
// model.loadStateDict. eval(): batch norm uses its running statistics.
const model = models.cifarResNet({ depth: 20, seed: 1 }).eval();

async function classify(pixels) {
  const n = pixels.length / PER_IMAGE;
  // noGrad: no autograd graph is kept; tidy frees the input and every intermediate.
  const logits = noGrad(() => tidy(() => model.forward(tensor(pixels, [n, ...IMAGE]))));
  try {
    const values = await logits.data();          // the only wait, and it does not block Node
    return Array.from({ length: n }, (_, i) => argmax(values.subarray(i * 10, i * 10 + 10)));
  } finally {
    logits.dispose();
  }
}

const server = createServer(async (req, res) => {
  if (req.method === 'GET' && req.url === '/health') return send(res, 200, { ok: true });
  if (req.method !== 'POST' || req.url !== '/classify') return send(res, 404, { error: 'GET /health or POST /classify' });
  // The body is raw float32 NCHW images (already normalized), any number of 3x32x32 images.
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  if (body.length === 0 || body.length % (4 * PER_IMAGE) !== 0) {
    return send(res, 400, { error: `expected a whole number of float32 ${IMAGE.join('x')} images, got ${body.length} bytes` });
  }
  // Copy into a fresh, aligned buffer: Buffer's byteOffset need not be a multiple of 4.
  const pixels = new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length));
  try {
    send(res, 200, { classes: await classify(pixels) });
  } catch (err) {
    send(res, 400, { error: err.message });          // the library's argument errors are readable
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));  // loopback, any free port
const base = `http://127.0.0.1:${server.address().port}`;
console.log(`listening on ${base}`);

// The demo: fire a burst of classify requests, and poll /health (every 20 ms, as a load
// balancer would, only faster) until they have all answered.
const images = new Float32Array(batch * PER_IMAGE).map((_, i) => Math.sin(i));
const post = () => fetch(`${base}/classify`, { method: 'POST', body: images, headers: { 'content-type': 'application/octet-stream' } }).then((r) => r.json());
await post();                                         // warm-up: the first call prepares the kernels
const started = performance.now();
let inFlight = true;
const burst = Promise.all(Array.from({ length: requests }, post)).finally(() => { inFlight = false; });
const health = [];
while (inFlight) {
  const t0 = performance.now();
  const r = await fetch(`${base}/health`);
  await r.json();
  if (inFlight) health.push(performance.now() - t0);  // counted only if classifying was still going on
  await sleep(20);
}
const results = await burst;
const ms = performance.now() - started;
console.log(`classified ${requests * batch} images in ${requests} requests in ${ms.toFixed(0)} ms; first request's classes: ${results[0].classes.slice(0, 8).join(' ')}`);
health.sort((a, b) => a - b);
console.log(`/health answered ${health.length} times while classifying: median ${health[health.length >> 1]?.toFixed(1)} ms, max ${health.at(-1)?.toFixed(1)} ms`);

const bad = await fetch(`${base}/classify`, { method: 'POST', body: new Uint8Array(10) });
console.log(`a malformed body gets ${bad.status}: ${(await bad.json()).error}`);
await new Promise((resolve) => server.close(resolve));
model.dispose();
console.log('server closed');

function send(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
}

function argmax(v) {
  let best = 0;
  for (let k = 1; k < v.length; k++) if (v[k] > v[best]) best = k;
  return best;
}
