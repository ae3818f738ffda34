/**
 * `cudnn-resnet convert IN.pth OUT.safetensors`: a PyTorch checkpoint's state dict to a
 * safetensors file, which this library and PyTorch (`safetensors.torch.load_file`) both read.
 * @module
 */
import { loadTorchStateDict } from '../io/torch.js';
import { saveSafetensors } from '../io/safetensors.js';

/** Converts `input` (a torch.save file) to `output` (safetensors); returns what was written, for the log. */
export async function convert(input: string, output: string, options: { key?: string; stripPrefix?: string }): Promise<string> {
  const tensors = await loadTorchStateDict(input, { backend: 'cpu', ...options });
  try {
    await saveSafetensors(output, tensors, { metadata: { format: 'pt' } });
    const values = Object.values(tensors).reduce((n, t) => n + t.size, 0);
    return `${output}: ${Object.keys(tensors).length} tensors, ${values.toLocaleString('en-US')} values (from ${input})`;
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}
