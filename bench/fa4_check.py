"""Does flash-attn-4 (CuTe DSL) run on this card, and what does it give against the shipped sdpa?

Usage: python bench/fa4_check.py [--site /tmp/fa4site] [--tag h200]

flash-attn-4's Python package needs the CuTe DSL (`cutlass.cute`), which ships in the wheel
``nvidia-cutlass-dsl-libs-core`` (a dependency of ``nvidia-cutlass-dsl-libs-base``) under
``nvidia_cutlass_dsl/dsl_packages``; the ``nvidia-cutlass-dsl`` meta wheel puts that folder on ``sys.path`` with a
``.pth`` file, which Python reads only in a site directory: a ``pip install --target DIR`` plus ``PYTHONPATH=DIR``
never reads it. ``--site DIR`` adds DIR as a site directory (``site.addsitedir``: .pth files read), as a normal
``pip install flash-attn-4`` into an environment does.

Then, on the language model's attention shape of a person-LoRA step (Qwen3-VL-8B: 32 query heads, 8 KV heads,
head_dim 128, 4 rows x ~1,076 tokens, causal, bf16): the largest difference of the outputs and input gradients
against PyTorch's sdpa (what every template ships), and forward / forward+backward time of each (CUDA events, median
of 20), with TFLOP/s and the MFU against a bf16 8192^3 matrix product measured in this run. Writes
bench/results/fa4_check_<device>[_<tag>].json.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import site
import statistics
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402
from data_prep.io import write_json  # noqa: E402


def timed(fn, reps: int = 20) -> float:
    import torch
    for _ in range(3):
        fn()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b) / 1e3)
    return statistics.median(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--site", help="a folder installed with pip --target: added as a site directory (.pth files read)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=1076)
    p.add_argument("--tag", default="")
    a = p.parse_args(argv)
    if a.site:
        site.addsitedir(a.site)
    res: dict = {"versions": {}, "import": None}
    for pkg in ("flash-attn-4", "nvidia-cutlass-dsl", "nvidia-cutlass-dsl-libs-base", "nvidia-cutlass-dsl-libs-core",
                "nvidia-cutlass-dsl-libs-cu13", "quack-kernels", "apache-tvm-ffi", "torch"):
        try:
            res["versions"][pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            res["versions"][pkg] = None
    import torch
    import torch.nn.functional as F

    from flops import mfu, peak_matmul_tflops
    if not torch.cuda.is_available():
        sys.exit("bench/fa4_check.py needs a CUDA device (flash-attn-4 has no CPU path)")
    dev = torch.cuda.get_device_name(0)
    res["device"] = dev
    try:
        import cutlass.cute  # noqa: F401
        from flash_attn.cute import flash_attn_func
        res["import"] = "ok"
    except Exception as e:  # noqa: BLE001 - the finding itself
        res["import"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    print(f"[fa4] import: {res['import']}  versions: {res['versions']}", flush=True)
    peak = peak_matmul_tflops()
    res["peak_matmul_tflops"] = peak
    if res["import"] == "ok":
        B, S, H, KV, D = a.batch, a.seq, 32, 8, 128
        g = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
        k = torch.randn(B, S, KV, D, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
        v = torch.randn(B, S, KV, D, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
        do = torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16, generator=g)

        def sdpa():
            return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  is_causal=True, enable_gqa=True).transpose(1, 2)

        def fa4():
            out = flash_attn_func(q, k, v, causal=True)
            return out[0] if isinstance(out, tuple) else out

        outs, grads = {}, {}
        for name, fn in (("sdpa", sdpa), ("fa4", fa4)):
            try:
                o = fn()
                o.backward(do)
                outs[name] = o.detach().float()
                grads[name] = [t.grad.detach().float().clone() for t in (q, k, v)]
                for t in (q, k, v):
                    t.grad = None
            except Exception as e:  # noqa: BLE001
                res[f"{name}_error"] = f"{type(e).__name__}: {e}"
                traceback.print_exc()
        if "fa4" in outs:
            res["max_abs_diff_out"] = (outs["fa4"] - outs["sdpa"]).abs().max().item()
            res["max_abs_diff_grad_qkv"] = [(x - y).abs().max().item() for x, y in zip(grads["fa4"], grads["sdpa"])]
            flops_fwd = 4 * B * H * S * S * D / 2  # causal: half the score matrix
            for name, fn in (("sdpa", sdpa), ("fa4", fa4)):
                f = timed(lambda: fn())
                fb = timed(lambda: fn().backward(do))
                res[name] = {"fwd_s": f, "fwd_bwd_s": fb, "fwd_tflops": flops_fwd / f / 1e12,
                             "fwd_bwd_tflops": 3.5 * flops_fwd / fb / 1e12,  # backward ~2.5x the forward's products
                             "fwd_mfu": mfu(flops_fwd / f, peak), "fwd_bwd_mfu": mfu(3.5 * flops_fwd / fb, peak)}
                print(f"[fa4] {name}: forward {f * 1e3:.2f} ms ({res[name]['fwd_tflops']:.0f} TFLOP/s, MFU "
                      f"{res[name]['fwd_mfu']:.2f}), forward+backward {fb * 1e3:.2f} ms (MFU {res[name]['fwd_bwd_mfu']:.2f})",
                      flush=True)
            print(f"[fa4] max |fa4 - sdpa|: output {res['max_abs_diff_out']:.4g}, grads q/k/v "
                  f"{[round(x, 4) for x in res['max_abs_diff_grad_qkv']]}", flush=True)
    out = ROOT / "bench" / "results" / f"fa4_check_cuda{'_' + a.tag if a.tag else ''}.json"
    write_json(out, res)
    print(f"[fa4] wrote {out}", flush=True)


if __name__ == "__main__":
    main()
