"""Every runtime replacement of library code, in one registry, each with the library versions it was tested on.

Usage: ``PATCHES["lora_fused"].apply()`` (puts the patch in; False where it did not); ``PATCHES["cuda_graphs"]
.allowed()`` (for a path of eval's own that stands in for a library call); ``experiment_env(cfg)``-style switches
read ``Patch.env`` / ``Patch.setting``.

Each entry says what it replaces (``"package.module:Class.attr"``), the pip specifiers it was tested with
(``tested``), the experiment key that turns it on (``setting``, None: always where its code path runs), the
environment variable that carries that key into a ``swift sft`` child (``env``; the plugin files in
``plugins/`` read it), the tests that show it computes what the library's code computes (``covered_by``), and
which of its branches only a GPU reaches and which bench covers them (``gpu_only``). On an installed version
outside ``tested``, ``apply()`` and ``allowed()`` leave the library's own code in place, warn once naming the
patch, the package and its version, and return False; the run goes on on the library's code. A distribution
that is not installed at all is not checked (the patch's own code treats it as absent: Liger on a CPU box).

The patch modules themselves (install/uninstall) sit beside this file and import torch, transformers, peft or swift
only when installed; this file imports none of them.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from importlib import import_module, metadata

_WARNED: set[str] = set()

TF, SWIFT, PEFT, TORCH, LIGER = "transformers", "ms-swift", "peft", "torch", "liger-kernel"
PINNED = {TF: "==5.17.0", SWIFT: "==4.6.0", PEFT: "==0.20.0", TORCH: "==2.11.0", LIGER: "==0.8.5"}


def _tested(*dists: str) -> dict[str, str]:
    return {d: PINNED[d] for d in dists}


@dataclass(frozen=True)
class Patch:
    name: str
    replaces: tuple[str, ...]
    tested: dict[str, str]
    setting: str | None
    module: str | None  # data_prep.patches.<module> with install()/uninstall(); None: a path of eval's own (allowed())
    about: str
    env: str | None = None
    plugin: bool = False  # loaded by swift sft / swift export children through external_plugins (plugins/<name>.py)
    covered_by: tuple[str, ...] = ()  # tests/<file>::<test> showing the patched code computes the library's result
    gpu_only: str = ""  # branches the CPU cannot reach, and the bench that runs them
    install_kwargs: dict = field(default_factory=dict)

    def mismatch(self) -> str | None:
        """Why the installed stack is outside ``tested`` (None: inside, or the package is not installed)."""
        from packaging.specifiers import SpecifierSet

        for dist, spec in self.tested.items():
            try:
                have = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
            if have not in SpecifierSet(spec):
                return f"{dist} {have} is installed, the patch was tested with {dist}{spec}"
        return None

    def allowed(self) -> bool:
        """Whether the installed libraries are the ones this patch was tested on; warns once where not."""
        why = self.mismatch()
        if why is None:
            return True
        if self.name not in _WARNED:
            _WARNED.add(self.name)
            msg = (f"[pigg] patch '{self.name}' ({self.about}) stays out: {why}; the run goes on on the library's own "
                   f"code ({', '.join(self.replaces)})")
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            print(msg, file=sys.stderr, flush=True)
        return False

    def apply(self, *args, **kwargs) -> bool:
        """Put the patch in (its module's ``install``); False where the installed versions are not the tested ones."""
        if not self.allowed():
            return False
        result = import_module(f"{__name__}.{self.module}").install(*args, **kwargs)
        return True if result is None else bool(result)

    def remove(self) -> None:
        """The library's own code back (its module's ``uninstall``)."""
        import_module(f"{__name__}.{self.module}").uninstall()


Q3 = "transformers.models.qwen3_vl.modeling_qwen3_vl"
Q25 = "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl"

REGISTRY: tuple[Patch, ...] = (
    Patch("remote_code", ("swift.model.register:ModelLoader.default_trust_remote_code",
                          "swift.model.model_meta:AutoConfig"), _tested(SWIFT), "model.trust_remote_code",
          "remote_code", "swift's loaders run a model folder's own code only where the experiment says so",
          env="PIGG_TRUST_REMOTE_CODE", plugin=True,
          covered_by=("test_remote_code.py::test_swift_sft_and_eval_do_not_run_a_model_folders_code",)),
    Patch("window_attention", (f"{Q25}:Qwen2_5_VLVisionAttention.forward",), _tested(TF),
          "model.batched_window_attention", "window_attention",
          "Qwen2.5-VL's ViT windows of one length in one attention call", env="PIGG_BATCHED_WINDOWS", plugin=True,
          covered_by=("test_window_attention.py::test_batched_windows_give_the_per_window_features",),
          gpu_only="none (bench/window_attention.py times it at 7B shape)"),
    Patch("token_init", ("swift.model.register:ModelLoader._add_new_special_tokens",), _tested(SWIFT),
          "train.tokens_init", "token_init", "new <user_U> rows drawn from the trained rows' distribution",
          env="PIGG_TOKEN_INIT", plugin=True,
          covered_by=("test_user_tokens.py::test_new_rows_are_drawn_from_the_trained_rows_distribution",)),
    Patch("lora_inputs", ("peft.tuners.tuners_utils:BaseTunerLayer._cast_input_dtype",), _tested(PEFT),
          "train.lora_autocast_inputs", "lora_inputs", "LoRA inputs left in the autocast dtype",
          env="PIGG_LORA_AUTOCAST_INPUTS", plugin=True,
          covered_by=("test_lora_inputs.py::test_lora_input_stays_bf16_under_autocast_with_the_same_output",),
          gpu_only="CUDA autocast (the CPU test runs CPU autocast, the same branch); bench/step_breakdown.py"),
    Patch("lora_fused", ("peft.tuners.lora.layer:Linear.forward",), _tested(PEFT), "train.lora_fused_add",
          "lora_fused", "LoRA's scaled update added inside one addmm", env="PIGG_LORA_FUSED_ADD", plugin=True,
          covered_by=("test_lora_fused.py::test_fused_add_gives_pefts_output_and_gradients",),
          gpu_only="CUDA autocast (the CPU test runs CPU autocast, the same branch); bench/step_breakdown.py"),
    Patch("rms_norm", (f"{Q3}:Qwen3VLTextRMSNorm.forward", "liger_kernel.transformers:_apply_liger_kernel_to_instance"),
          _tested(TF, TORCH, LIGER), "train.native_rms_norm", "rms_norm",
          "Qwen3-VL's RMSNorm as torch's fused operator; Liger keeps its other kernels", env="PIGG_NATIVE_RMSNORM",
          plugin=True, covered_by=("test_rms_norm.py::test_fused_operator_is_the_same_norm",
                                   "test_patches.py::test_the_liger_wrappers_on_the_cpu"),
          gpu_only="the fused operator runs on CUDA bf16 inputs only: bench/step_breakdown.py (person_lora)"),
    Patch("epoch_prefetch", ("swift.dataloader.shard:BatchSamplerShard.__iter__",
                             "swift.dataloader.shard:DataLoaderShard.__iter__",
                             "swift.trainers.mixin:DataLoaderMixin.get_train_dataloader",
                             "torch.utils.data.dataloader:_BaseDataLoaderIter.__init__"), _tested(SWIFT, TORCH),
          "train.epoch_prefetch", "epoch_prefetch", "the next epoch's batches encoded during this one",
          env="PIGG_EPOCH_PREFETCH", plugin=True,
          covered_by=("test_epoch_prefetch.py::test_next_epoch_is_encoded_during_this_one_with_the_same_batches_and_random_stream",)),
    Patch("pad_multiple", ("swift.trainers.mixin:SwiftMixin._get_data_collator",), _tested(SWIFT),
          "train.pad_to_multiple", "pad_multiple", "a CUDA training batch padded to a multiple of tokens",
          env="PIGG_PAD_TO_MULTIPLE", plugin=True,
          covered_by=("test_pad_multiple.py::test_collator_pads_only_where_it_should",),
          gpu_only="the padding applies on CUDA only: bench/step_breakdown.py"),
    Patch("vision_cache", (f"{Q3}:Qwen3VLVisionModel.forward", f"{Q25}:Qwen2_5_VisionTransformerPretrainedModel.forward"),
          _tested(TF), "train.vision_cache_gib", "vision_cache",
          "the frozen vision tower's features kept for later epochs", env="PIGG_VISION_CACHE_GIB", plugin=True,
          covered_by=("test_vision_cache.py::test_stored_features_equal_the_towers_and_are_used_only_when_every_screenshot_hits",)),
    Patch("flash_lengths", ("transformers.modeling_flash_attention_utils:_lazy_imports",), _tested(TF), None,
          "flash_lengths", "int lengths for flash-attn-4's variable-length kernel (attn_impl: flash_attention_4)",
          plugin=True,
          covered_by=("test_swift_configs.py::test_flash_attention_4_variable_length_kernel_gets_int_lengths",),
          gpu_only="flash-attn-4 runs on Hopper only: bench/fa4_check.py"),
    Patch("gqa_decode", ("transformers.modeling_utils:AttentionInterface._global_mapping",), _tested(TF),
          "eval.gqa_decode", "gqa_decode", "decode steps read the KV cache once per KV head group",
          covered_by=("test_gqa_decode.py::test_decode_step_equals_sdpa_with_left_padding",)),
    Patch("liger_instance", (f"{Q3}:Qwen3VLTextRMSNorm.forward", f"{Q3}:Qwen3VLTextMLP.forward"),
          _tested(TF, LIGER), "eval.liger_kernel", "liger_instance",
          "Liger's Triton kernels put into the eval model's modules",
          covered_by=("test_patches.py::test_the_liger_wrappers_on_the_cpu",),
          gpu_only="Liger's kernels are Triton (GPU only): bench/gpu_bench.py compares its answers with eager ones"),
    Patch("cuda_graphs", ("transformers.modeling_utils:PreTrainedModel.get_compiled_call",
                          "transformers.generation.utils:GenerationMixin._valid_auto_compile_criteria"),
          _tested(TF), "eval.cuda_graphs", None, "decode steps replayed from a CUDA graph (eval/cuda_graphs.py)",
          covered_by=("test_end_to_end.py::test_eval_prefetch_and_static_cache_give_the_answers_of_swifts_engine",),
          gpu_only="graph capture and replay: bench/gpu_bench.py (max |log-prob difference| against eager)"),
    Patch("swift_infer", ("swift.infer_engine.transformers_engine:TransformersEngine._infer",), _tested(SWIFT), None,
          None, "swift's generate call after encode + collate, for pre-encoded batches (eval/batches.py)",
          covered_by=("test_end_to_end.py::test_eval_workers_give_the_answers_of_swifts_engine",)),
)
PATCHES = {p.name: p for p in REGISTRY}


def _on(v: str | None) -> tuple | None:
    return () if v == "1" else None


# a plugin's environment value -> install()'s arguments, or None (the setting is off)
FROM_ENV = {
    "remote_code": lambda v: (v == "1",),
    "window_attention": lambda v: () if (v or "1") == "1" else None,
    "token_init": lambda v: () if (v or "vocab") == "vocab" else None,
    "lora_inputs": _on, "lora_fused": _on, "rms_norm": _on, "epoch_prefetch": _on,
    "pad_multiple": lambda v: (int(v),) if int(v or 0) > 1 else None,
    "vision_cache": lambda v: () if float(v or 0) > 0 else None,
    "flash_lengths": lambda v: (),
}


def apply_from_env(name: str) -> bool:
    """In a ``swift sft`` / ``swift export`` child (its plugin file): the patch as its environment variable says."""
    import os

    p = PATCHES[name]
    args = FROM_ENV[name](os.environ.get(p.env) if p.env else None)
    return p.apply(*args) if args is not None else False


def env_value(value) -> str:
    """An experiment value as a child's environment carries it."""
    return ("1" if value else "0") if isinstance(value, bool) else str(value)
