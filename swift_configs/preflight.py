"""Will a generated `swift sft` run fit the GPUs? Peak memory per GPU, estimated before anything loads.

Usage: ``est = estimate(run, n_gpus)``; ``check(run, gpus)`` raises PreflightError naming settings that
fit; the training entry points call it (``--force`` skips it, ``--dry-run`` prints the estimate).

The estimate adds, per GPU: the weights (bf16, or 4-bit NF4 for QLoRA's quantized linear layers;
divided over the GPUs under ZeRO-3), gradients and AdamW states of what trains (full: bf16 grads and
bf16 states without DeepSpeed, fp32 master + moments under ZeRO, partitioned; CPU under
``train.offload: optimizer``; LoRA: fp32 adapter, grads and states), DeepSpeed's working buffers, and
activations per sample (per token x hidden size x layer, with or without gradient checkpointing;
the logits of the loss unless Liger's fused linear + cross-entropy runs). The coefficients come from
runs on H100/H200 of the 8B-shaped model (bench/RESULTS.md, bench/results/memory_fit_*.json); the
card's memory comes from nvidia-smi (no CUDA context in this process) or PIGG_GPU_MEMORY_GB.
"""
from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

GIB = 2**30
# Measured peaks of the 8B shape (memory(GiB) in swift's logging.jsonl), 1,073 tokens a sample, fitted:
ACT_NOGC = 63.8  # bytes / (token x hidden x layer), no checkpointing, Liger: person LoRA b4 54.0, b8 92.5 GiB
ACT_GC = 4.0  # with checkpointing: LoRA b4 20.2 GiB; ZeRO-3 full 1x8 69.4 / 4x2 73.2 GiB (2 GPUs)
LOGITS = 1.56  # x fp32 logits (token x vocab x 4 B) without Liger's fused loss: LoRA b4 57.9 vs 54.0 GiB
LOGITS_GC = 0.8  # the same with checkpointing (its peak is elsewhere in the step): fitted with ACT_GC
ZERO_BUFFERS = 6.6 * GIB  # DeepSpeed's gathered parameters, buckets (ZeRO-3 full 2 GPUs: 69.4 - 62.8 GiB)
CONTEXT = 0.75 * GIB  # CUDA context + cuBLAS workspace + allocator slack, outside torch's count
FIT = 0.95  # a run fits when its estimate is at most this share of the card
TEXT_TOKENS = 93  # prompt text + answer beside the image tokens (1,073 at image_max_token_num 980)
NF4_BYTES = 0.516  # 4-bit NF4 + double-quantized absmax per 64 weights


class PreflightError(RuntimeError):
    pass


def safetensors_params(model_dir: Path) -> dict[str, int]:
    """{tensor name: element count} from the safetensors headers (no weights read)."""
    out = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                out[name] = count
    if not out:
        raise PreflightError(f"{model_dir}: no *.safetensors to count the parameters of")
    return out


def model_shape(model_dir: Path) -> dict:
    """Parameter counts (vision tower + aligner, language model, its linear layers) and text config."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    tc = cfg.get("text_config", cfg)
    params = safetensors_params(model_dir)
    vision = sum(n for k, n in params.items() if ".visual." in k or k.startswith("visual."))
    total = sum(params.values())
    linear = sum(n for k, n in params.items() if k.endswith("proj.weight") and ".visual." not in k
                 and not k.startswith("visual."))
    if cfg.get("tie_word_embeddings", tc.get("tie_word_embeddings")) and not any("lm_head" in k for k in params):
        total += tc["vocab_size"] * tc["hidden_size"]  # the tied head is one tensor on disk, used twice
    return {"total": total, "vision": vision, "language": total - vision, "linear": linear, "text": tc}


def lora_params(tc: dict, rank: int) -> int:
    """LoRA on q/k/v/o/gate/up/down of every language-model layer (all-linear with the ViT frozen)."""
    h, i = tc["hidden_size"], tc["intermediate_size"]
    hd = tc.get("head_dim") or h // tc["num_attention_heads"]
    q, kv = tc["num_attention_heads"] * hd, (tc.get("num_key_value_heads") or tc["num_attention_heads"]) * hd
    per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h)
    return rank * per_layer * tc["num_hidden_layers"]


def screenshots(args: dict) -> int | None:
    """Distinct screenshots in a run's training files (None: a file cannot be read)."""
    seen = set()
    try:
        for f in args.get("dataset") or []:
            with open(f, encoding="utf-8") as fh:
                for line in fh:
                    seen.update(json.loads(line).get("images") or [])
    except (OSError, ValueError):
        return None
    return len(seen)


def vision_cache_bytes(args: dict, image_tokens: int, cap_gib: float, n_gpus: int = 1) -> int:
    """What data_prep/patches/vision_cache.py keeps on the GPU for this run: per distinct screenshot its bf16 pixels and its
    features (merged tokens x the language width, Qwen3-VL's deepstack levels too), up to ``cap_gib``; 0 where the
    vision tower trains or the run spans several GPUs (it is then never cached)."""
    if cap_gib <= 0 or n_gpus > 1 or not args.get("freeze_vit", True) or not args.get("freeze_aligner", True):
        return 0
    cfg = json.loads((Path(args["model"]) / "config.json").read_text(encoding="utf-8"))
    vc = cfg.get("vision_config", {})
    merge = vc.get("spatial_merge_size", 2)
    channels = vc.get("in_channels", vc.get("in_chans", 3))
    patch_dim = channels * vc.get("temporal_patch_size", 2) * vc.get("patch_size", 14) ** 2
    width = vc.get("out_hidden_size") or cfg.get("text_config", cfg).get("hidden_size")
    levels = 1 + len(vc.get("deepstack_visual_indexes") or [])
    per = image_tokens * (merge ** 2 * patch_dim + levels * width) * 2
    n = screenshots(args)
    cap = int(cap_gib * GIB)
    return cap if n is None else min(cap, n * per)


def estimate(args: dict, n_gpus: int, image_tokens: int, offload: str = "none", vision_cache_gib: float = 0.0) -> dict:
    """Peak bytes per GPU of a generated swift sft run (``args``: its YAML body) on ``n_gpus`` GPUs, with
    ``vision_cache_gib`` the experiment's ``train.vision_cache_gib``."""
    shape = model_shape(Path(args["model"]))
    tc = shape["text"]
    full = args.get("tuner_type") == "full"
    ds = str(args.get("deepspeed", "")) if n_gpus > 1 or args.get("deepspeed") else ""
    zero = 3 if "zero3" in ds else 2 if "zero2" in ds else 0
    n = max(1, n_gpus)
    qlora = args.get("quant_method") == "bnb" and int(args.get("quant_bits", 0) or 0) == 4
    trainable = shape["language"] if full else lora_params(tc, int(args.get("lora_rank", 8)))
    # the user-token method's special tokens: modules_to_save [embed_tokens] trains a copy of the embedding
    saved = 0 if full else tc["vocab_size"] * tc["hidden_size"] * ("embed_tokens" in (args.get("modules_to_save") or []))
    trainable += saved
    if qlora:
        weights = shape["linear"] * NF4_BYTES + (shape["total"] - shape["linear"]) * 2
    else:
        weights = 2 * shape["total"] / (n if zero == 3 else 1)
    weights += 2 * saved
    if not full:
        grads, optim = 4 * trainable, 8 * trainable + 4 * trainable  # fp32 adapter: grads, 2 moments, weights
    elif zero == 3:
        grads, optim = 2 * trainable / n, 12 * trainable / n
    elif zero == 2:
        grads, optim = 2 * trainable + 4 * trainable / n, 12 * trainable / n
    else:
        grads, optim = 2 * trainable, 4 * trainable  # bf16 AdamW states, no DeepSpeed
    if offload == "optimizer":
        optim = 0
    buffers = ZERO_BUFFERS if zero else 0
    tokens = image_tokens + TEXT_TOKENS
    batch = int(args.get("per_device_train_batch_size", 1))
    gc = bool(args.get("gradient_checkpointing", True))
    per_sample = tokens * tc["hidden_size"] * tc["num_hidden_layers"] * (ACT_GC if gc else ACT_NOGC)
    if not args.get("use_liger_kernel"):
        per_sample += (LOGITS_GC if gc else LOGITS) * tokens * tc["vocab_size"] * 4
    parts = {"weights": weights, "gradients": grads, "optimizer": optim, "deepspeed_buffers": buffers,
             "activations": batch * per_sample,
             "vision_cache": vision_cache_bytes(args, image_tokens, vision_cache_gib, n),
             "cuda_context": CONTEXT}
    return {"per_gpu_bytes": int(sum(parts.values())), "parts": {k: int(v) for k, v in parts.items()},
            "n_gpus": n, "zero": zero, "offload": offload, "qlora": qlora, "full": full, "batch": batch,
            "gradient_checkpointing": gc, "tokens_per_sample": tokens, "params": shape["total"],
            "trainable": int(trainable)}


def card_bytes(gpus: list[str]) -> list[int] | None:
    """Memory of each listed GPU: PIGG_GPU_MEMORY_GB if set, else nvidia-smi's memory.total (None: unknown)."""
    from data_prep.runtime.memory import card_limit_bytes

    cap = card_limit_bytes()
    if cap is not None:
        return [cap] * len(gpus)
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    total = {}
    for line in out.stdout.strip().splitlines():
        try:
            idx, mib = [x.strip() for x in line.split(",")]
            total[idx] = int(float(mib)) * 2**20
        except ValueError:  # "[N/A]" (MIG, some drivers): size unknown
            continue
    return [total[g] for g in gpus] if all(g in total for g in gpus) else None


def describe(est: dict, card: int | None = None) -> str:
    p = est["parts"]
    kind = "QLoRA" if est["qlora"] else "full" if est["full"] else "LoRA"
    zero = f", ZeRO-{est['zero']}" if est["zero"] else ""
    head = (f"preflight: {kind}{zero}{', optimizer on CPU' if est['offload'] == 'optimizer' else ''}, "
            f"batch {est['batch']} x {est['tokens_per_sample']} tokens, checkpointing "
            f"{'on' if est['gradient_checkpointing'] else 'off'}, {est['n_gpus']} GPU(s): "
            f"~{est['per_gpu_bytes'] / GIB:.1f} GiB per GPU")
    if card:
        head += f" of {card / GIB:.1f} GiB ({est['per_gpu_bytes'] / card:.0%})"
    return head + " = " + " + ".join(f"{k} {v / GIB:.1f}" for k, v in p.items() if v)


def alternatives(args: dict, n_gpus: int, image_tokens: int, offload: str, card: int, template: str,
                 vision_cache_gib: float = 0.0) -> list[str]:
    """Settings that would fit this card, each as the override that sets it, with its estimate."""
    fits = []

    def check(label, a=None, n=n_gpus, off=offload, vc=vision_cache_gib):
        e = estimate({**args, **(a or {})}, n, image_tokens, off, vc)
        if e["per_gpu_bytes"] <= FIT * card:
            fits.append(f"{label}  (~{e['per_gpu_bytes'] / GIB:.1f} GiB per GPU)")

    if vision_cache_bytes(args, image_tokens, vision_cache_gib, n_gpus):
        check("--set train.vision_cache_gib=0 (the vision tower recomputed every epoch)", vc=0.0)
    bs, acc = int(args.get("per_device_train_batch_size", 1)), int(args.get("gradient_accumulation_steps", 1))
    if not args.get("gradient_checkpointing", True):
        check("gradient_checkpointing=true", {"gradient_checkpointing": True})
    b = bs
    while b > 1:
        b //= 2
        check(f"per_device_train_batch_size={b} gradient_accumulation_steps={acc * bs // b} (same effective batch)",
              {"per_device_train_batch_size": b, "gradient_accumulation_steps": acc * bs // b})
    if args.get("tuner_type") == "full":
        if offload != "optimizer":
            check("--set train.offload=optimizer (ZeRO-3, AdamW states and fp32 gradients in CPU memory: ~16 B a parameter of host RAM, ~131 GB at 8B)",
                  {"deepspeed": "zero3"}, off="optimizer")
        for n in (2, 4, 8):
            if n > n_gpus:
                check(f"{n} GPUs (ZeRO-3)", {"deepspeed": "zero3"}, n=n)
    elif not (args.get("quant_method") == "bnb"):
        q = {"quant_method": "bnb", "quant_bits": 4, "gradient_checkpointing": True}
        check(f"QLoRA: --set train.{template.split('_')[0]}_template={template.split('_')[0]}_qlora", q)
    return fits


RECIPE_KEYS = ("deepspeed", "per_device_train_batch_size", "gradient_accumulation_steps", "gradient_checkpointing")
# a chosen recipe's estimate stays under this share of the card: the estimate runs ~6 % above measured ZeRO peaks (2 x
# H100, ZeRO-3 8 x 1: 73.6 estimated, 69.4 GiB = 87 % measured), so this leaves >= ~13 % of the card free in practice
RECIPE_FIT = 0.925


def choose_recipe(args: dict, n_gpus: int, card: int, image_tokens: int, offload: str = "none",
                  keep: tuple[str, ...] = ()) -> tuple[dict, str]:
    """The fastest global full fine-tuning recipe that fits ``card`` on ``n_gpus`` GPUs, with the per-GPU effective
    batch of ``args`` (micro-batch x accumulation) kept, and the keys in ``keep`` (set by the user) left as they are.
    Order, from the measurements (bench/RESULTS.md, "Global full fine-tuning"): the largest micro-batch first (ZeRO-3
    gathers the weights once per micro-batch: 8 x 1 4,989 vs 4 x 2 3,148 tokens/s per GPU on 4 x H100), then ZeRO-2
    before ZeRO-3 (no gathers: 4,615 vs 3,792 at 4 x 2 on 2 x H200), then gradient checkpointing off where the
    activations fit (2 x 4 without it was slower than 8 x 1 with it). Returns ({swift key: value}, why) or ({}, why)
    where the template's own recipe is kept."""
    per_gpu = int(args.get("per_device_train_batch_size", 1)) * int(args.get("gradient_accumulation_steps", 1))
    stages = [int(str(args["deepspeed"])[-1])] if "deepspeed" in keep else ([2, 3] if offload != "optimizer" else [3])
    micros = [int(args["per_device_train_batch_size"])] if "per_device_train_batch_size" in keep else \
        [m for m in (8, 4, 2, 1) if m <= per_gpu and per_gpu % m == 0]
    gcs = [bool(args.get("gradient_checkpointing"))] if "gradient_checkpointing" in keep else [False, True]
    tried = []
    for micro in micros:
        for zero in stages:
            for gc in gcs:
                cand = {"deepspeed": f"zero{zero}", "per_device_train_batch_size": micro,
                        "gradient_accumulation_steps": per_gpu // micro, "gradient_checkpointing": gc}
                est = estimate({**args, **cand}, n_gpus, image_tokens, offload)["per_gpu_bytes"]
                label = f"ZeRO-{zero} {micro} x {per_gpu // micro} checkpointing {'on' if gc else 'off'}"
                if est <= RECIPE_FIT * card:
                    skipped = "; faster, not fitting: " + ", ".join(tried) if tried else ""
                    return cand, (f"recipe: {label} (est. {est / GIB:.1f} of {card / GIB:.1f} GiB per GPU, "
                                  f"{est / card:.0%}): the fastest that fits{skipped}")
                tried.append(f"{label} {est / GIB:.1f} GiB")
    return {}, "recipe: the template's (nothing in the search fits: the preflight says what would)"


def check(args: dict, gpus: list[str], image_tokens: int, offload: str, template: str,
          n_gpus: int | None = None, vision_cache_gib: float = 0.0) -> tuple[dict, str]:
    """(estimate, a line to print); raises PreflightError when the run does not fit the listed GPUs.
    ``n_gpus``: GPUs one run spans (default all listed; a personalized fold takes one)."""
    n_gpus = n_gpus or len(gpus)
    est = estimate(args, n_gpus, image_tokens, offload, vision_cache_gib)
    cards = card_bytes(gpus)
    if not cards:
        return est, describe(est) + " (card size unknown: nvidia-smi found none; set PIGG_GPU_MEMORY_GB to check)"
    card = min(cards)
    line = describe(est, card)
    if est["full"] and not est["zero"]:
        line += ("\n  note: full fine-tuning without DeepSpeed keeps bf16 weights and bf16 AdamW states (no fp32 master "
                 "copy): at PIGG's lr 1e-6 an update is ~1/80 of a weight's bf16 step and rounds away. "
                 "--set train.offload=optimizer (ZeRO-3) keeps fp32 master weights")
    if est["per_gpu_bytes"] > FIT * card:
        alts = alternatives(args, n_gpus, image_tokens, offload, card, template, vision_cache_gib)
        raise PreflightError(
            f"{line}\nthis run does not fit {n_gpus} GPU(s) of {card / GIB:.1f} GiB (estimate above {FIT:.0%} "
            "of the card). Settings that would fit:\n    " + ("\n    ".join(alts) if alts else
                                                             "(none found: more or larger GPUs)")
            + "\n  (swift keys go after the launcher's arguments as key=value, or in train.*_overrides; "
              "--force starts anyway)")
    return est, line

