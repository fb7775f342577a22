"""ms-swift external plugin for bench/step_breakdown.py (experimental, not shipped): the language model's decoder
layers run through torch.compile (one compiled forward shared by every layer: the layer is an input, not a
constant), where PIGG_COMPILE_LAYERS=1. What it measures: how much of a person-LoRA step is host time (Python and
kernel launches of ~2,000 small ops a layer stack) that fused kernels remove, and what the compile costs a run."""
import os
import sys
import time

if os.environ.get("PIGG_COMPILE_LAYERS") == "1":
    import torch
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as q25
    from transformers.models.qwen3_vl import modeling_qwen3_vl as q3

    for cls in (q3.Qwen3VLTextDecoderLayer, q25.Qwen2_5_VLDecoderLayer):
        compiled = torch.compile(cls.forward, dynamic=None)
        orig = cls.forward

        def forward(self, *a, _c=compiled, _o=orig, **k):
            if not self.training:
                return _o(self, *a, **k)
            t = time.time()
            out = _c(self, *a, **k)
            if time.time() - t > 5:
                print(f"[pigg] compile_layers: {time.time() - t:.1f} s in a compiling call", file=sys.stderr, flush=True)
            return out

        cls.forward = forward
