"""The experiment schema: every key an experiment YAML may hold, declared once, with its type, default, allowed
values or range and a one-line meaning.

Usage: ``KEYS["folds.k"]``; ``defaults()`` (the nested default tree; required keys hold ``REQUIRED``);
``check_value(key, value, where)``; ``markdown()`` (docs/config.md is this, generated: ``python -m
data_prep.config_schema > docs/config.md``; a test fails when the file is stale).

data_prep/config.py loads a file against it (with or without ``base:``). The defaults are PIGG's protocol on
Qwen3-VL-8B-Instruct: ``swift_configs/experiments/pigg.yaml`` holds exactly these values, with the four keys that
have no default (``name`` and the data and model paths). Imports no torch.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

class _Required:
    """The default of a key every experiment must give (name, paths); survives the loader's deep copies."""

    def __deepcopy__(self, memo):
        return self

    def __repr__(self) -> str:
        return "<required>"


REQUIRED = _Required()
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Key:
    key: str  # dotted name
    kind: str  # str | int | float | bool | path | name | users | choice | choices | mapping | int_or_auto
    default: Any
    doc: str
    choices: tuple = ()
    min: float | None = None  # smallest allowed value (int / float / int_or_auto)
    min_open: bool = False  # min itself excluded (> instead of >=)
    extra: dict = field(default_factory=dict)


_PROFILES = ("harness", "ui_tars", "qwen2_5_vl_native", "qwen3_vl_native")  # eval/profiles.py PROFILES (a test checks)
_FAMILIES = ("qwen3_vl", "qwen2_5_vl")  # data_prep/family.py FAMILIES (a test checks)
_PROMPTS = ("auto", "pigg", "pigg_pixels")  # auto or data_prep/schema.py PROMPT_COORDS

SCHEMA: tuple[Key, ...] = (
    Key("name", "name", REQUIRED, "the experiment's folder name: runs go to `<paths.runs>/<name>/` (letters, digits, . _ -)"),
    Key("paths.raw", "path", REQUIRED, "FingerTip-20K as downloaded (Kaggle qinglongyang/fingertip-20k); `data_prep build` reads it, never writes"),
    Key("paths.data", "path", REQUIRED, "the built data: samples/, swift/ exports, report.json"),
    Key("paths.runs", "path", "runs", "where run folders go"),
    Key("paths.model", "path", REQUIRED, "local folder of the base model (no hub access)"),
    Key("model.family", "choice", "qwen3_vl", "qwen3_vl answers on the 0-1000 grid; qwen2_5_vl in pixels of the resized "
        "screenshot (Qwen2.5-VL, UI-TARS-1.5, ...)", choices=_FAMILIES),
    Key("model.batched_window_attention", "bool", True, "qwen2_5_vl: its ViT's window attention in one call per window "
        "length (same outputs)"),
    Key("model.trust_remote_code", "bool", False, "true only for a model folder that ships its own modelling code "
        "(its .py files run on load)"),
    Key("data.actions", "choices", ["click"], "which actions become samples: [click] or [click, long_click]",
        choices=("click", "long_click")),
    Key("data.prompt", "choice", "auto", "the prompt (data_prep/schema.py); auto: the family's (pigg | pigg_pixels)",
        choices=_PROMPTS),
    Key("users.test", "users", "1-10", "personalized and evaluated users (re-indexed ids: '1-10', '1,3,5-7' or a list)"),
    Key("users.global", "users", "11-83", "global fine-tuning users (no overlap with users.test)"),
    Key("folds.k", "int", 3, "folds per test user", min=2),
    Key("folds.seed", "int", 42, "the fold shuffle's seed (Python's random, PIGG's algorithm); also swift's seed", min=0),
    Key("folds.mode", "choice", "random", "random: PIGG's per-sample folds (leak across episodes); episode: whole "
        "episodes per fold", choices=("random", "episode")),
    Key("image_max_token_num", "int", 980, "per-image token budget, training and eval alike (1280*28*28 px / 32^2 "
        "≈ 980)", min=1),
    Key("eval.profile", "choice", "harness", "how the model is asked and read (eval/profiles.py): harness = the "
        "trained prompt and answer; the others for off-the-shelf models", choices=_PROFILES),
    Key("eval.delta", "float", 140.0, "click accuracy threshold on the 0-1000 grid (AITW's 14 %)", min=0, min_open=True),
    Key("eval.max_new_tokens", "int", 512, "answer tokens at most (PIGG's value; answers are ~30 tokens)", min=1),
    Key("eval.reserve_new_tokens", "int", 64, "answer tokens the KV cache reserves per row; rows still going there "
        "are redone alone up to max_new_tokens", min=1),
    Key("eval.batch_size", "int_or_auto", "auto", "rows per generate call; auto: the most that leave 10 % of the card "
        "free, at most 128", min=1),
    Key("eval.gqa_decode", "bool", True, "decode steps read the KV cache once per KV head group"),
    Key("eval.liger_kernel", "bool", True, "Liger's Triton kernels in eval (GPU only; pip install -e '.[gpu]')"),
    Key("eval.gpu_preprocess", "bool", True, "the image processor normalises and cuts patches on the GPU"),
    Key("eval.workers", "int", 0, "processes encoding the next batches (CPU patches only: gpu_preprocess false)", min=0),
    Key("eval.prefetch", "int", 4, "with workers 0: threads encoding the next batch while this one generates", min=0),
    Key("eval.cuda_graphs", "bool", True, "GPU only: static KV cache, decode steps replayed from a CUDA graph"),
    Key("eval.overrides", "mapping", {}, "extra TransformersEngine keyword arguments, e.g. {attn_impl: flash_attn}"),
    Key("eval.keep_loaded", "bool", True, "sweeps: one eval process per worker keeps the base model and swaps each "
        "fold's adapter; false: a fresh eval process per fold"),
    Key("train.global_template", "choice", "global_full", "swift_configs/templates/<name>.yaml of the global stage",
        choices=("global_full", "global_lora", "global_qlora")),
    Key("train.global_overrides", "mapping", {}, "swift sft keys on top of the global template (checked against swift)"),
    Key("train.person_template", "choice", "person_lora", "the personalized stage's template (person_qlora: a 4-bit "
        "base for ~24 GB cards)", choices=("person_lora", "person_full", "person_qlora")),
    Key("train.person_base", "str", "global_full", "what personalization starts from: a run under `runs/<name>/` "
        "(global_full | global_lora) or a checkpoint path"),
    Key("train.person_overrides", "mapping", {}, "swift sft keys on top of the person template"),
    Key("train.keep_loaded", "bool", True, "sweeps: one training process per worker imports once and forks each run; "
        "false: a fresh process per run"),
    Key("train.tokens_overrides", "mapping", {}, "the user-token stage's swift keys, on top of person_overrides"),
    Key("train.tokens_init", "choice", "vocab", "new `<user_U>` rows drawn from the trained rows' distribution (vocab) "
        "or swift's spare rows (none)", choices=("vocab", "none")),
    Key("train.lora_autocast_inputs", "bool", True, "LoRA layers take their input in bf16 under autocast (same recipe)"),
    Key("train.lora_fused_add", "bool", True, "LoRA's scaled update added inside one addmm (same recipe)"),
    Key("train.native_rms_norm", "bool", True, "Qwen3-VL's RMSNorm as torch's fused operator instead of Liger's kernel"),
    Key("train.epoch_prefetch", "bool", True, "the loader starts the next epoch's batches while this epoch trains"),
    Key("train.pad_to_multiple", "int", 64, "a CUDA training batch padded to a multiple of this many tokens (0: off)",
        min=0),
    Key("train.vision_cache_gib", "float", 8.0, "GiB of the frozen vision tower's features kept on the GPU for epochs "
        "2+ (0: recompute)", min=0),
    Key("train.global_recipe", "choice", "auto", "global full FT on several GPUs: auto picks the fastest ZeRO stage, "
        "micro-batch and checkpointing that fit the cards (PIGG's effective batch kept); template: the template as "
        "written with train.zero_stage", choices=("auto", "template")),
    Key("train.zero_stage", "choice", 3, "DeepSpeed ZeRO stage for global full fine-tuning on more than one GPU, "
        "where train.global_recipe is template", choices=(2, 3)),
    Key("train.offload", "choice", "none", "optimizer: AdamW states and fp32 gradients in host memory under ZeRO-3 (1-2 GPUs, slower; ~16 B a "
        "parameter of host RAM)",
        choices=("none", "optimizer")),
    Key("controls.data_curve_n", "sizes", [8, 16, 32, 64], "training samples a fold for the data-efficiency curve "
        "(a seeded subset of each fold's training set, nested: a smaller n is part of a larger one); the curve's "
        "last point, all of them, is the personalized stage itself"),
    Key("controls.in_context_k", "int", 3, "earlier clicks of the same user put before each hold-out sample in "
        "in-context personalization (picked from the fold's training set by instruction similarity)", min=1),
    Key("controls.in_context_variants", "choices", ["image", "text"], "image: the earlier turns carry their "
        "screenshots; text: instruction and answer point only", choices=("image", "text")),
)
KEYS = {k.key: k for k in SCHEMA}
MAPPING_KEYS = {k.key for k in SCHEMA if k.kind == "mapping"}
PATH_KEYS = {k.key for k in SCHEMA if k.kind == "path"}


def defaults() -> dict:
    """The nested tree of defaults (``REQUIRED`` where an experiment must give the value)."""
    out: dict = {}
    for k in SCHEMA:
        *parents, leaf = k.key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = k.default if not isinstance(k.default, (dict, list)) else type(k.default)(k.default)
    return out


def sections() -> set[str]:
    return {k.key.split(".")[0] for k in SCHEMA if "." in k.key}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_value(key: str, val, where: str):
    """``val`` checked (and normalised: an int where a float is declared) against the key's declaration; raises
    ValueError naming ``where`` and the dotted key."""
    k = KEYS[key]

    def bad(want: str):
        raise ValueError(f"{where}: '{key}' must be {want}, got {val!r}")

    if k.kind == "bool":
        if not isinstance(val, bool):
            bad("true or false")
    elif k.kind in ("str", "path", "name"):
        if not isinstance(val, str):
            bad("a string" if k.kind == "str" else "a path" if k.kind == "path" else "a folder name")
        if k.kind in ("path", "name", "str") and not val.strip():
            bad("non-empty")
        if k.kind == "name" and (not NAME_RE.match(val) or val in (".", "..")):
            bad("a plain folder name (letters, digits, . _ -; no / and not ..)")
    elif k.kind == "int":
        if not _is_int(val):
            bad("an integer")
    elif k.kind == "float":
        if _is_int(val):
            val = float(val)
        if not isinstance(val, float):
            bad("a number")
    elif k.kind == "int_or_auto":
        if val != "auto" and not _is_int(val):
            bad("auto or a positive integer")
    elif k.kind == "choice":
        if isinstance(val, bool) or val not in k.choices:
            bad(f"one of {list(k.choices)}")
    elif k.kind == "choices":
        if not isinstance(val, list) or not val or any(v not in k.choices for v in val):
            bad(f"a non-empty list of {list(k.choices)}")
    elif k.kind == "sizes":
        if not isinstance(val, list) or not val or any(not _is_int(v) or v < 1 for v in val) or len(set(val)) < len(val):
            bad("a non-empty list of distinct positive integers")
        val = sorted(val)
    elif k.kind == "users":
        if not (isinstance(val, (str, list)) or _is_int(val)):
            bad("user ids: '1-10', '1,3,5-7', a list or one id")
    elif k.kind == "mapping":
        if not isinstance(val, dict):
            bad("a mapping of keys to values")
    if k.min is not None and (_is_int(val) or isinstance(val, float)):
        if val < k.min or (k.min_open and val == k.min):
            bad(f"{'>' if k.min_open else '>='} {k.min:g}")
    return val


def markdown() -> str:
    """The config reference (docs/config.md)."""
    lines = ["# Experiment configuration", "",
             "Every key an experiment YAML (`swift_configs/experiments/*.yaml`) may hold. Generated from "
             "`data_prep/config_schema.py` by `python -m data_prep.config_schema > docs/config.md`; do not edit by hand.",
             "",
             "A file may start with `base: other.yaml` and hold only its differences; without `base:` it is checked "
             "against these defaults (PIGG's protocol on Qwen3-VL-8B-Instruct, the values of `pigg.yaml`). Unknown keys, "
             "wrong types and values out of range are refused before anything runs, naming the file and the key. "
             "Every entry point takes `--set key=value` (repeatable) on top. Paths in a YAML file resolve against "
             "the project root; paths given with `--set` against the directory the command runs in.", "",
             "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for k in SCHEMA:
        default = "required" if k.default is REQUIRED else f"`{_yaml(k.default)}`"
        allowed = (", ".join(f"`{c}`" for c in k.choices) if k.choices else
                   (f"{'>' if k.min_open else '>='} {k.min:g}" if k.min is not None else ""))
        if k.kind == "int_or_auto":
            allowed = f"`auto` or {allowed}"
        lines.append(f"| `{k.key}` | {k.kind} | {default} | {allowed} | {k.doc} |")
    return "\n".join(lines) + "\n"


def _yaml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return "{}" if v == {} else str(v)


if __name__ == "__main__":
    sys.stdout.write(markdown())
