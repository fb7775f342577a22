"""ms-swift external plugin (benches only): torch's cuDNN attention backend of scaled_dot_product_attention off
where PIGG_SDPA_CUDNN=0, so SDPA picks its other kernels (flash, memory-efficient). Why: torch.profiler over an
8B person-LoRA fold's epoch-1 steps (bench/RESULTS.md, "Person LoRA") showed cuDNN's attention costing
575 us of host time a forward call and 2.7 ms a backward call while new sequence lengths arrive (an execution plan
built per shape)."""
import os

if os.environ.get("PIGG_SDPA_CUDNN") == "0":
    import torch

    torch.backends.cuda.enable_cudnn_sdp(False)
