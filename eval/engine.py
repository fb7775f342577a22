"""The eval engine: ms-swift's TransformersEngine on one device, built the way training saw the model
(a checkpoint's args.json, a QLoRA base in 4 bits, new user tokens), the speed switches applied, and the
card's limits (PIGG_GPU_MEMORY_GB, the batch that leaves 10% of the card free).

Usage: ``engine = build_engine(model, adapters, batch_size, "0", model_type=..., ...)``;
``plan_batch(engine, rows, meta, "auto", 512, 64, reader)``. Errors a person can fix raise EvalError.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from data_prep.patches import PATCHES
from data_prep.errors import HarnessError
from data_prep.runtime.memory import PROMPT_SLACK, gib

from .generation import Reader


class EvalError(HarnessError, RuntimeError):
    """An eval that cannot start or finish for a reason a person can fix (the message says which)."""


QUANT_SKIP = ["model.visual", "lm_head"]  # what swift leaves in bf16 for Qwen3-VL: vision tower + aligner, lm_head


def adapter_args(adapters: list[str]) -> dict:
    """The training arguments (swift's args.json) of the first adapter that has them ({} if none)."""
    for a in adapters or []:
        f = Path(a) / "args.json"
        if f.exists():
            return json.loads(f.read_text(encoding="utf-8"))
    return {}


def quantization_of(adapters: list[str]):
    """The bitsandbytes config a QLoRA adapter's base was loaded with in training (its args.json), so
    that eval loads the base the same way (4-bit NF4 weights, not the bf16 ones the adapter never saw)."""
    args = adapter_args(adapters)
    if args.get("quant_method") != "bnb":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    bits = int(args.get("quant_bits") or 4)
    return BitsAndBytesConfig(load_in_4bit=bits == 4, load_in_8bit=bits == 8,
                              bnb_4bit_quant_type=args.get("bnb_4bit_quant_type") or "nf4",
                              bnb_4bit_use_double_quant=bool(args.get("bnb_4bit_use_double_quant", True)),
                              bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=QUANT_SKIP)


def check_devices(devices: list[str]) -> None:
    """A GPU asked for must be there: EvalError naming what this process finds, never a silent run on the CPU."""
    gpus = [d for d in devices if d != "cpu"]
    if not gpus:
        return
    import torch

    if not torch.cuda.is_available():
        raise EvalError(f"--devices {','.join(devices)}: no usable CUDA GPU in this process (torch {torch.__version__}, "
                        f"built for CUDA {torch.version.cuda or 'none'}, {torch.cuda.device_count()} device(s) visible, "
                        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}); "
                        "run with --devices cpu (or the launcher's first argument cpu), or fix the GPU set-up")


def build_engine(model: str, adapters: list[str], batch_size: int, device: str, overrides: dict | None = None,
                 gqa_decode: bool = False, liger_kernel: bool = False, gpu_preprocess: bool = False,
                 model_type: str = "qwen3_vl", template_type: str | None = None, trust_remote_code: bool = False,
                 batched_windows: bool = True, new_tokens: list[str] | None = None):
    """swift's TransformersEngine on one device; ``gqa_decode``: decode steps through data_prep/patches/gqa_decode.py;
    ``liger_kernel``: Liger's Triton RMSNorm / RoPE / SwiGLU in the language model (GPU only);
    ``gpu_preprocess``: the image processor rescales, normalises and cuts patches on the GPU (GPU only);
    ``model_type`` / ``template_type``: swift's, for a raw model folder (the experiment's model.family);
    ``trust_remote_code``: whether Python files in the model folder may run (model.trust_remote_code);
    ``batched_windows``: Qwen2.5-VL's ViT windows in one attention call per length (data_prep/patches/window_attention.py);
    ``new_tokens``: the user tokens to add (default: those the first adapter was trained with, its args.json)."""
    import torch
    from swift.infer_engine import TransformersEngine

    for name, on in (("remote_code", None), ("window_attention", batched_windows), ("gqa_decode", gqa_decode)):
        p = PATCHES[name]  # the registry's version check; outside it the library's own code runs
        p.apply(trust_remote_code) if on is None else p.apply() if on else p.remove()

    on_cpu = device == "cpu"
    check_devices([device])
    quant = quantization_of(adapters)
    if quant is not None and on_cpu:
        raise EvalError(f"{adapters[0]}: a QLoRA adapter (4-bit bitsandbytes base, quant_method bnb): evaluate it "
                        "on a GPU, where its base loads 4-bit as in training")
    kwargs = dict(adapters=adapters or None, max_batch_size=batch_size, quantization_config=quant,
                  torch_dtype=torch.float32 if on_cpu else torch.bfloat16,
                  device_map="cpu" if on_cpu else "cuda:0", **(overrides or {}))
    if not (Path(model) / "args.json").exists():
        kwargs["model_type"] = model_type  # a raw model folder; a swift checkpoint names its own
        if template_type:
            kwargs["template_type"] = template_type
    tokens = adapter_args(adapters).get("new_special_tokens") if new_tokens is None else new_tokens
    if tokens:  # the user-token method's <user_U>: the same tokenizer (and embedding size) as in training
        kwargs["new_special_tokens"] = tokens
    engine = TransformersEngine(model, **kwargs)
    if liger_kernel and not on_cpu:
        apply_liger(engine.model)
    if gpu_preprocess and not on_cpu:
        set_image_device(engine, engine.model.device)
    return engine


def set_image_device(engine, device) -> None:
    """Where the image processor turns screenshots into patches (None: the CPU). The same float32
    ops run on the resized uint8 image either way; on the GPU they leave the CPU the JPEG decode and resize."""
    engine.template.processor.image_processor.device = device


def apply_liger(model) -> bool:
    """Liger's kernels in the model's modules (data_prep/patches/liger_instance.py); EvalError where Liger is missing."""
    from data_prep.patches.liger_instance import MissingLiger

    try:
        return PATCHES["liger_instance"].apply(model)
    except MissingLiger as e:
        raise EvalError(str(e)) from None


def cap_card() -> None:
    """PIGG_GPU_MEMORY_GB: this process uses at most that much of the card (a shared or smaller card)."""
    import torch

    from data_prep.runtime.memory import card_limit_bytes

    cap = card_limit_bytes()
    if cap is not None and torch.cuda.is_available():
        total = torch.cuda.mem_get_info()[1]
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))


def peak_memory() -> dict | None:
    """This process's peak CUDA memory: allocated by tensors, and reserved by the allocator (what the card
    must hold, beside the CUDA context)."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    return {"allocated": int(torch.cuda.max_memory_allocated()), "reserved": int(torch.cuda.max_memory_reserved())}


CPU_AUTO_BATCH = 32  # eval.batch_size: auto off a GPU (the tiny model; memory is not what limits the CPU)


def plan_batch(engine, rows: list[tuple[str, dict]], meta: dict, batch_size, max_new_tokens: int,
               reserve_new_tokens: int, reader: Reader | None = None) -> dict:
    """eval.batch_size: auto -> the batch for the first pass (KV reserved for ``reserve_new_tokens``) and
    for rows answered again up to ``max_new_tokens``, from the card's free memory (data_prep/runtime/memory.py); a
    number stands for both. The prompt length is the encoded largest screenshot's."""
    if batch_size != "auto":
        return {"batch_size": int(batch_size), "long_batch_size": int(batch_size), "auto": False}
    model = engine.model
    if model.device.type != "cuda" or not rows:
        return {"batch_size": CPU_AUTO_BATCH, "long_batch_size": CPU_AUTO_BATCH, "auto": True, "device": "cpu"}
    import torch
    from swift.infer_engine import InferRequest

    from data_prep.runtime.memory import batch_plan, card_limit_bytes

    from .batches import prepare_template

    # the longest prompt: the most images (in-context rows carry earlier screenshots), then the largest screen
    area = lambda r: (len(r[1]["images"]), meta.get(r[0], {}).get("width", 0) * meta.get(r[0], {}).get("height", 0))  # noqa: E731
    sid, row = max(rows, key=area)
    enc = prepare_template(engine).encode(InferRequest(
        messages=(reader or Reader()).messages(row, meta.get(sid)), images=row["images"]))
    prompt = len(enc["input_ids"]) + PROMPT_SLACK
    free, total = torch.cuda.mem_get_info()
    card = min(card_limit_bytes() or total, total)
    free = min(free, card - torch.cuda.memory_reserved())
    tc = model.config.text_config.to_dict()
    nbytes = torch.finfo(model.dtype).bits // 8
    first = batch_plan(tc, prompt, min(reserve_new_tokens, max_new_tokens), free, card, nbytes)
    long = batch_plan(tc, prompt, max_new_tokens, free, card, nbytes)
    if not first["fits_one_row"]:
        raise EvalError(f"eval: one row needs {gib(first['per_row_bytes'])} beside the model, and only "
                        f"{gib(first['usable_bytes'])} of this card is free after keeping 10% spare: use a larger "
                        "GPU, or lower image_max_token_num / eval.reserve_new_tokens")
    return {"batch_size": first["batch_size"], "long_batch_size": long["batch_size"], "auto": True,
            "first": first, "long": long}


class Engines:
    """Engines kept between the jobs of one process (eval/serve.py: a sweep's eval worker). The base model loads
    once; a job's LoRA adapter is put on it (swift's own ``_add_adapter``, as a fresh engine does) and taken off
    after (peft ``unload``: the base's own modules back, nothing merged), so each job answers exactly as a fresh
    process loading base + adapter would. After a job (``park``) a GPU engine's base goes to host memory or stays on
    the card, as the sweep decided for the next training run. A QLoRA base (4-bit) or a full checkpoint is built for
    its job and freed after. ``last``: how the latest engine was had ("built", "kept base, adapter swapped", "kept")."""

    def __init__(self):
        self.engine, self.key, self.adapter, self.parked, self.last = None, None, None, False, None
        self._meta: dict = {}

    def sample_index(self, cfg: dict, load) -> dict:
        """The experiment's sample records, read once per data folder (``load(cfg)``)."""
        path = cfg["paths"]["data"]
        if path not in self._meta:
            self._meta = {path: load(cfg)}
        return self._meta[path]

    def get(self, model: str, adapters: list[str], batch_size: int, device: str, **kw):
        """The engine for (model, adapters) on ``device``; ``kw``: build_engine's switches (part of the key)."""
        tokens = tuple(adapter_args(adapters).get("new_special_tokens") or ())
        key = (model, device, tokens, repr(sorted(kw.items())))
        reusable = len(adapters) <= 1 and quantization_of(adapters) is None
        if self.engine is not None and self.key == key and reusable:
            self._unpark()
            self._take_off()
            if adapters:
                self.engine._add_adapter(adapters[0])
                self.adapter = adapters[0]
            self.last = "kept base, adapter swapped" if adapters else "kept"
        else:
            self.drop()
            self.engine = build_engine(model, [] if reusable else adapters, batch_size, device,
                                       new_tokens=list(tokens), **kw)  # the tokenizer the adapters were trained with
            if reusable and adapters:
                self.engine._add_adapter(adapters[0])
            self.key, self.adapter = (key if reusable else None), (adapters[0] if reusable and adapters else None)
            self.last = "built"
        self.engine.max_batch_size = batch_size
        self.engine.generation_config = getattr(self.engine.model, "generation_config", None)
        return self.engine

    def _take_off(self) -> None:
        if self.adapter is not None:
            self.engine.model = self.engine.model.unload()
            self.adapter = None

    def _unpark(self) -> None:
        if self.parked:
            self.engine.model.to("cuda:0")
            self.parked = False

    def park(self, to_host: bool = True) -> float:
        """After a job: a reusable GPU engine to host memory when ``to_host`` (else it stays on the card: the sweep
        found room for it beside the next training run), any other engine freed, the card's cached blocks released
        to the next run; seconds taken."""
        import time

        t = time.time()
        if self.engine is None:
            return 0.0
        if self.key is None:
            self.drop()
        elif self.engine.model.device.type == "cuda":
            import torch

            if to_host:
                self.engine.model.to("cpu")
                self.parked = True
            torch.cuda.empty_cache()
        return round(time.time() - t, 2)

    def drop(self) -> None:
        if self.engine is None:
            return
        import gc

        import torch

        self.engine = self.key = self.adapter = None
        self.parked = False
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
