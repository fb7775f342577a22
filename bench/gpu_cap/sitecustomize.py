"""Bench only: cap every Python process's CUDA memory at PIGG_GPU_MEMORY_GB (GiB), to measure a smaller card
on a larger one. Put this folder first on PYTHONPATH; `swift sft` and its children inherit it.
(eval/engine.py applies the same cap itself; training has no such setting, hence this file.)"""
import os

if os.environ.get("PIGG_GPU_MEMORY_GB"):
    try:
        import torch

        if torch.cuda.is_available():
            cap = float(os.environ["PIGG_GPU_MEMORY_GB"]) * 2**30
            for i in range(torch.cuda.device_count()):
                total = torch.cuda.get_device_properties(i).total_memory
                torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), i)
    except Exception as e:  # never stop the process being capped
        print(f"gpu_cap: not capped: {e!r}")
