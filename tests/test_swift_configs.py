"""Generated swift YAMLs: the committed argument table, swift's own parser, validation messages."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import ROOT, run_cli
from data_prep.config import ConfigError, load_experiment
from data_prep.rundir import run_dir
from swift_configs import argtable
from swift_configs.generate import render


def swift_argv(run) -> list[str]:
    """What `swift sft file.yaml` turns the file into (swift.cli.main.parse_yaml_args)."""
    argv = []
    for k, v in yaml.safe_load(run.dump()).items():
        if k == "ENV":
            continue
        argv.append(f"--{k}")
        argv += [str(i) for i in v] if isinstance(v, list) else [json.dumps(v) if isinstance(v, dict) else str(v)]
    return argv


@pytest.fixture(scope="module")
def fake_global(exp, tiny_model):
    """A finished global run whose checkpoint is the tiny model (enough to render person runs)."""
    d = run_dir(exp["cfg"], "global_full")
    d.mkdir(parents=True, exist_ok=True)
    (d / "DONE").write_text(yaml.safe_dump({"checkpoint": str(tiny_model)}))
    cfg = {**exp["cfg"], "paths": {**exp["cfg"]["paths"], "model": str(tiny_model)}}
    yield cfg
    (d / "DONE").unlink()


def test_argtable_matches_installed_swift():
    assert argtable.derive() == argtable.load(), "run `python -m swift_configs.argtable --write`"


@pytest.mark.parametrize("stage,template,gpus", [
    ("global", "global_full", "cpu"), ("global", "global_lora", "0"), ("global", "global_full", "0,1"),
    ("person", "person_lora", "cpu"), ("person", "person_full", "0"), ("person", "person_qlora", "0"),
    ("global", "global_qlora", "0"),
])
def test_every_template_round_trips_through_swifts_parser(fake_global, stage, template, gpus):
    from swift.arguments import SftArguments
    from swift.utils.utils import _patch_get_type_hints
    from transformers import HfArgumentParser

    cfg = {**fake_global, "train": {**fake_global["train"], f"{stage}_template": template}}
    run = render(cfg, stage, user=1 if stage == "person" else None, fold=0 if stage == "person" else None, gpus=gpus)
    with _patch_get_type_hints():
        parser = HfArgumentParser([SftArguments])
    ns, remaining = parser.parse_known_args(swift_argv(run))
    assert remaining == []
    assert ns.model_type == "qwen3_vl" and ns.freeze_vit and ns.freeze_aligner and not ns.vit_gradient_checkpointing
    assert ns.output_dir.startswith("/") and ns.dataset[0].startswith("/")
    body = yaml.safe_load(run.dump())
    assert body["ENV"]["IMAGE_MAX_TOKEN_NUM"] == str(cfg["image_max_token_num"])
    assert None not in body.values()
    if gpus == "0,1":
        assert ns.deepspeed == "zero3" and body["ENV"]["NPROC_PER_NODE"] == "2"
    if gpus == "cpu":
        assert ns.use_cpu is True and ns.torch_dtype == "float32"
    if template.startswith("person"):
        assert ns.model == str(fake_global["paths"]["model"]) and "fold_0" in ns.dataset[0]
    if template.endswith("qlora"):  # swift's QLoRA keys: 4-bit NF4, double quantization, bf16 compute
        assert (ns.quant_method, ns.quant_bits, ns.bnb_4bit_quant_type, ns.bnb_4bit_use_double_quant) == \
            ("bnb", 4, "nf4", True) and str(ns.bnb_4bit_compute_dtype).endswith("bfloat16")
    if template.endswith("lora"):
        assert ns.lora_dropout == 0.1 and ns.lora_rank == 8 and ns.lora_alpha == 32


def test_pigg_defaults_in_templates(fake_global):
    g = render(load_experiment("pigg", ["paths.data=" + fake_global["paths"]["data"],
                                        "paths.model=" + fake_global["paths"]["model"],
                                        "users.test=" + str(fake_global["users"]["test"]),
                                        "users.global=" + str(fake_global["users"]["global"])]), "global", gpus="0").args
    assert (g["learning_rate"], g["num_train_epochs"], g["per_device_train_batch_size"],
            g["gradient_accumulation_steps"], g["warmup_steps"], g["weight_decay"]) == (1e-6, 1, 8, 1, 50, 0.01)
    assert g["tuner_type"] == "full" and g["torch_dtype"] == "bfloat16" and g["gradient_checkpointing"]
    # PIGG's effective batch: 8 per GPU for global (1 x 8 there), 4 for personalized (1 x 4 there)
    assert g["per_device_train_batch_size"] * g["gradient_accumulation_steps"] == 8
    p = render(fake_global, "person", user=1, fold=0, gpus="0").args
    assert p["per_device_train_batch_size"] * p["gradient_accumulation_steps"] == 4


def test_liger_kernels_on_gpu_only_and_a_missing_package_is_named(fake_global, monkeypatch):
    import importlib.util

    from swift_configs.generate import missing_packages

    gpu = render(fake_global, "person", user=1, fold=0, gpus="0")
    assert gpu.args["use_liger_kernel"] is True
    cpu = render(fake_global, "person", user=1, fold=0, gpus="cpu")
    assert cpu.args["use_liger_kernel"] is False and missing_packages(cpu) == []
    with pytest.raises(ConfigError, match="command line: use_liger_kernel=true: use_liger_kernel needs a GPU"):
        render(fake_global, "person", user=1, fold=0, gpus="cpu", overrides=["use_liger_kernel=true"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "liger_kernel" else real(n, *a))
    (msg,) = missing_packages(gpu)
    assert "templates/person_lora.yaml" in msg and "pip install -e '.[gpu]'" in msg
    assert missing_packages(render(fake_global, "person", user=1, fold=0, gpus="0",
                                   overrides=["use_liger_kernel=false"])) == []
    # the training entry refuses to start swift without it, and says why
    from swift_configs.train import execute

    gpu.run_dir.mkdir(parents=True, exist_ok=True)
    with pytest.raises(ConfigError, match="(?s)cannot start swift sft:.*needs the liger-kernel package"):
        execute(gpu)
    assert not (gpu.run_dir / "train.log").exists()


def test_flash_attention_asked_for_and_missing_is_said_before_anything_loads(fake_global, tmp_path, capsys):
    """attn_impl flash_attn / flash_attention_4 and padding_free, where no flash-attn package is installed (this
    box: none is): the training run names the module and the key; eval refuses its override; sdpa needs nothing."""
    from data_prep.runtime.attention import flash_problems
    from swift_configs.generate import missing_packages

    assert missing_packages(render(fake_global, "person", user=1, fold=0, gpus="cpu")) == []  # sdpa, as shipped
    run = render(fake_global, "person", user=1, fold=0, gpus="cpu", overrides=["attn_impl=flash_attn"])
    (msg,) = missing_packages(run)
    assert "attn_impl: flash_attn (templates/person_lora.yaml or an override) needs the flash_attn module" in msg
    run = render(fake_global, "person", user=1, fold=0, gpus="cpu", overrides=["padding_free=true"])
    (msg,) = missing_packages(run)
    assert msg.startswith("padding_free: true") and "needs attn_impl one of" in msg
    assert "flash_attn.cute, cutlass.cute" in flash_problems({"attn_impl": "flash_attention_4"}, "x")[0]
    from conftest import write_experiment
    from eval.run import main

    cfg = write_experiment(tmp_path, eval__overrides={"attn_impl": "flash_attn"})
    assert main(["--config", str(cfg), "--model", str(tmp_path / "m"), "--data", str(tmp_path / "x.jsonl"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "t.yaml: eval.overrides) needs the flash_attn module" in err


def test_flash_attention_4_variable_length_kernel_gets_int_lengths(monkeypatch):
    """data_prep/patches/plugins/flash_lengths.py (every swift sft imports it): where flash-attn-4 is installed, the longest row
    that transformers 5.17 passes its variable-length kernel as a 0-d tensor arrives as an int (flash-attn-4's CuTe
    DSL refused the tensor on an H200: "Expected IntTuple ... got 1080", bench/RESULTS.md); the kernel's signature
    (transformers reads its keyword arguments from it) and every other implementation are untouched; not installed
    (this box), nothing changes."""
    import inspect

    import torch
    import transformers.utils
    from transformers import modeling_flash_attention_utils as fau

    from data_prep.patches.flash_lengths import install as int_varlen_lengths

    seen = {}

    def kernel(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None, causal=False):
        seen.update(max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k)
        return q

    monkeypatch.setattr(fau, "_lazy_imports", lambda impl, *a, **kw: ("fwd", kernel, "kv", "pad", "unpad"))
    assert int_varlen_lengths() is False and fau._lazy_imports("flash_attention_4")[1] is kernel  # not installed
    monkeypatch.setattr(transformers.utils, "is_flash_attn_4_available", lambda: True)
    assert int_varlen_lengths() is True and int_varlen_lengths() is False  # once
    fns = fau._lazy_imports("flash_attention_4", None)
    assert fns[0] == "fwd" and fns[2:] == ("kv", "pad", "unpad") and fns[1] is not kernel
    assert list(inspect.signature(fns[1]).parameters) == list(inspect.signature(kernel).parameters)
    fns[1](1, 2, 3, max_seqlen_q=torch.tensor(1080), max_seqlen_k=torch.tensor(7), causal=True)
    assert seen == {"max_seqlen_q": 1080, "max_seqlen_k": 7} and type(seen["max_seqlen_q"]) is int
    assert fau._lazy_imports("flash_attention_2", None)[1] is kernel


def test_children_start_with_huge_pages_unless_the_environment_says_otherwise(monkeypatch):
    """THP_MEM_ALLOC_ENABLE=1 (PyTorch reads it when a process first allocates, so it travels in the child's
    environment): a default every child gets, a value already set wins."""
    from data_prep.runtime.procenv import child_env

    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert child_env()["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    assert child_env(devices="cpu")["THP_MEM_ALLOC_ENABLE"] == "0"


def test_validation_reports_every_problem_with_file_and_key(fake_global):
    with pytest.raises(ConfigError) as e:
        render(fake_global, "global", overrides=["lora_rnk=8", "learning_rate=fast", "save_steps=null",
                                                "resume_from_checkpoint=relative/dir", "output_dir=/x",
                                                "save_strategy=no"])
    msg = str(e.value)
    assert "unknown swift sft key 'lora_rnk'" in msg and "command line: lora_rnk=8" in msg
    assert "'learning_rate' must be float" in msg and "'save_steps' is null" in msg
    assert "'resume_from_checkpoint' must be an absolute path" in msg
    assert "'save_strategy' is False: YAML reads a bare no/yes/off/on as a boolean" in msg
    assert "command line: output_dir=/x: 'output_dir' is set from the experiment (paths.runs)" in msg


def test_exponent_numbers_without_a_dot_are_floats(fake_global, tmp_path):
    """``learning_rate: 2e-5`` (how ML configs write it) is the string '2e-5' to PyYAML (YAML 1.1); every config the
    harness reads goes through data_prep.io.load_yaml, which reads it as YAML 1.2 does: a float, in an experiment
    file and on the command line (a quoted '2e-5' stays a string)."""
    from data_prep.config import parse_override
    from data_prep.io import load_yaml

    assert load_yaml("a: 2e-5\nb: 1E3\nc: '2e-5'\nd: 7\ne: 1.0e-2") == {"a": 2e-5, "b": 1000.0, "c": "2e-5", "d": 7,
                                                                        "e": 0.01}
    exp_file = tmp_path / "lr.yaml"
    exp_file.write_text(f"base: {fake_global['config_path']}\ntrain:\n  person_overrides:\n    learning_rate: 3e-4\n")
    cfg = load_experiment(str(exp_file))
    assert cfg["train"]["person_overrides"]["learning_rate"] == 3e-4
    run = render(cfg, "person", user=1, fold=0, gpus="0", overrides=["warmup_ratio=5e-2"])
    assert run.args["learning_rate"] == 3e-4 and run.args["warmup_ratio"] == 0.05
    assert parse_override("train.person_overrides.learning_rate=2e-5") == ("train.person_overrides.learning_rate", 2e-5)


def test_missing_base_checkpoint_fails_fast(exp):
    p = run_cli("-m", "swift_configs.person", "--config", str(exp["path"]), "--set", "name=nobase", "--users", "1",
                check=False)
    assert p.returncode == 2 and "is not finished (no DONE marker)" in p.stderr and "Traceback" not in p.stderr
    assert not run_dir({**exp["cfg"], "name": "nobase"}).exists()  # nothing started
    p = run_cli("-m", "swift_configs.generate", "global", "--config", str(exp["path"]), "--dry-run",
                "num_train_epoch=1", check=False)
    assert p.returncode == 2 and "unknown swift sft key 'num_train_epoch'" in p.stderr


def test_dry_run_prints_the_command(exp, tiny_model):
    p = run_cli("-m", "swift_configs.train", "--config", str(exp["path"]), "--gpus", "0,1", "--full",
                "--set", f"paths.model={tiny_model}", "--dry-run")
    assert "NPROC_PER_NODE=2" in p.stdout and "swift sft" in p.stdout and "deepspeed: zero3" in p.stdout
    assert not (run_dir(exp["cfg"], "global_full") / "generated").exists()


def _bash(args, env):
    import os
    import subprocess

    e = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run(["bash", *args], cwd=ROOT, env={**e, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=300)


def test_slurm_global_sbatch_dry_run(exp, tiny_model):
    env = {"SLURM_NNODES": "2", "SLURM_GPUS_PER_NODE": "4", "SLURM_NODEID": "1", "MASTER_ADDR": "node0"}
    p = _bash(["scripts/slurm/global.sbatch", "--config", str(exp["path"]), "--set", f"paths.model={tiny_model}",
               "--dry-run"], env)
    assert p.returncode == 0, p.stderr[-2000:]
    for want in ("NNODES=2", "NODE_RANK=1", "MASTER_ADDR=node0", "MASTER_PORT=29500", "NPROC_PER_NODE=4",
                 "CUDA_VISIBLE_DEVICES=0,1,2,3", "deepspeed: zero3", "tuner_type: full"):
        assert want in p.stdout, want


def test_slurm_person_array_task_picks_one_fold(exp, fake_global, tiny_model):
    p = _bash(["scripts/slurm/person_array.sbatch", "--config", str(exp["path"]), "--set",
               f"paths.model={tiny_model}", "--dry-run"], {"SLURM_ARRAY_TASK_ID": "4"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("# user") == 1 and "# user 2 fold 1" in p.stdout and "CUDA_VISIBLE_DEVICES=0" in p.stdout
    p = _bash(["scripts/slurm/person_array.sbatch", "--config", str(exp["path"]), "--dry-run"],
              {"SLURM_ARRAY_TASK_ID": "6"})
    assert p.returncode == 2 and "--array-task 6: want 0..5 (2 users x 3 folds)" in p.stderr


def test_offload_optimizer_renders_zero3_with_cpu_adam(fake_global):
    """train.offload: optimizer -> ZeRO-3 with AdamW's states on the CPU (our DeepSpeed JSON: swift's zero3 +
    offload_optimizer), also on one GPU (under torchrun), with the expandable allocator segments."""
    cfg = load_experiment(fake_global["config_path"], ["train.offload=optimizer"])
    cfg["paths"] = fake_global["paths"]
    run = render(cfg, "global", gpus="0")
    ds = json.loads(open(run.args["deepspeed"]).read())
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "none"
    assert run.env["NPROC_PER_NODE"] == 1 and run.env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    with pytest.raises(ConfigError, match="'train.offload' must be one of \\['none', 'optimizer'\\]"):
        load_experiment(fake_global["config_path"], ["train.offload=params"])


def test_the_speed_switches_reach_the_training_child(fake_global):
    """train.lora_fused_add / train.vision_cache_gib / train.native_rms_norm / train.epoch_prefetch /
    train.pad_to_multiple (pigg.yaml) become the environment the swift plugins read, and the plugins are in every
    run's external_plugins; a negative cache size or padding multiple is refused."""
    from data_prep.runtime.procenv import PLUGINS

    cfg = load_experiment(fake_global["config_path"], ["train.vision_cache_gib=2", "train.lora_fused_add=false",
                                                       "train.epoch_prefetch=false"])
    cfg["paths"] = fake_global["paths"]
    run = render(cfg, "global", gpus="0")
    assert run.env["PIGG_VISION_CACHE_GIB"] == "2.0" and run.env["PIGG_LORA_FUSED_ADD"] == "0"
    assert run.env["PIGG_EPOCH_PREFETCH"] == "0"
    assert run.env["PIGG_NATIVE_RMSNORM"] == "1" and run.env["PIGG_PAD_TO_MULTIPLE"] == "64"  # pigg.yaml's defaults
    assert {p.name for p in PLUGINS} >= {"lora_fused.py", "vision_cache.py", "rms_norm.py", "epoch_prefetch.py",
                                         "pad_multiple.py"}
    assert all(str(p) in run.args["external_plugins"] for p in PLUGINS)
    with pytest.raises(ConfigError, match="'train.vision_cache_gib' must be >= 0"):
        load_experiment(fake_global["config_path"], ["train.vision_cache_gib=-1"])
    with pytest.raises(ConfigError, match="'train.pad_to_multiple' must be >= 0"):
        load_experiment(fake_global["config_path"], ["train.pad_to_multiple=-8"])


@pytest.fixture(scope="module")
def shape8b(tmp_path_factory):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from build_tiny_model import write_shapes

    return write_shapes(tmp_path_factory.mktemp("shape") / "8b", "8b")


def test_training_preflight_stops_before_anything_starts(exp, shape8b):
    """Global full FT of the 8B shape on one 48 GB card: refused before swift starts (no run folder), with
    the settings that fit; --dry-run prints the estimate (2 x 80 GB: the ZeRO-3 default)."""
    env = {"PIGG_GPU_MEMORY_GB": "79.6"}
    args = ["-m", "swift_configs.train", "--config", str(exp["path"]), "--set", f"paths.model={shape8b}",
            "--set", "name=pre", "--full"]
    p = run_cli(*args, "--gpus", "0", env={"PIGG_GPU_MEMORY_GB": "48"}, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "this run does not fit 1 GPU(s) of 48.0 GiB" in p.stderr
    assert "--set train.offload=optimizer" in p.stderr and "4 GPUs (ZeRO-3)" in p.stderr
    assert "2 GPUs (ZeRO-3)" not in p.stderr  # 73.6 GiB each: not on 48 GB cards
    assert not run_dir({**exp["cfg"], "name": "pre"}).exists()
    p = run_cli(*args, "--gpus", "0", "--dry-run", env=env)  # fits one 80 GB card, but bf16 without master weights
    assert "keeps bf16 weights and bf16 AdamW states" in p.stdout
    p = run_cli(*args, "--gpus", "0,1", "--dry-run", env=env)
    # (the demo-based experiment: its batch 4, no checkpointing, 32 image tokens)
    assert "preflight: full, ZeRO-3, batch 4 x 125 tokens, checkpointing off, 2 GPU(s): ~73.3 GiB per GPU of 79.6" \
        in p.stdout
    p = run_cli(*args, "--gpus", "0", "--dry-run", "--set", "train.offload=optimizer", env=env)
    assert "optimizer on CPU" in p.stdout and "optimizer 0.0" not in p.stdout
    p = run_cli("-m", "swift_configs.person", "--config", str(exp["path"]), "--set", f"paths.model={shape8b}",
                "--set", f"train.person_base={shape8b}", "--set", "name=pre", "--set", "image_max_token_num=980",
                "--set", "train.person_overrides={}", "--users", "1", "--gpus", "0",
                "--dry-run", env={"PIGG_GPU_MEMORY_GB": "24"})
    assert "does not fit 1 GPU(s) of 24.0 GiB" in p.stdout and "person_qlora" in p.stdout


def test_user_token_runs_render_on_the_union_with_their_tokens(fake_global):
    """The one-model runs: the person template on each fold's union file; special tokens added to the
    tokenizer and their embedding trained with the LoRA; text and pooled add nothing. swift parses them."""
    from swift.arguments import SftArguments
    from swift.utils.utils import _patch_get_type_hints
    from transformers import HfArgumentParser

    users = fake_global["users"]["test"]
    special = render(fake_global, "tokens", fold=1, kind="special", gpus="0")
    assert special.args["new_special_tokens"] == [f"<user_{u}>" for u in users]
    assert special.args["modules_to_save"] == ["embed_tokens"] and special.args["tuner_type"] == "lora"
    assert special.args["dataset"][0].endswith("swift/user_tokens/special/fold_1/train.jsonl")
    assert special.run_dir == run_dir(fake_global, "user_tokens_special", "fold_1").resolve()
    with _patch_get_type_hints():
        ns, remaining = HfArgumentParser([SftArguments]).parse_known_args(swift_argv(special))
    assert remaining == [] and ns.new_special_tokens == [f"<user_{u}>" for u in users]
    for kind in ("text", "pooled"):
        r = render(fake_global, "tokens", fold=0, kind=kind, gpus="0")
        assert "new_special_tokens" not in r.args and "modules_to_save" not in r.args
        assert r.args["model"] == str(fake_global["paths"]["model"])  # on top of the global checkpoint
    with pytest.raises(ConfigError, match="need a fold and a kind"):
        render(fake_global, "tokens", fold=0, kind="emoji")
    # train.tokens_overrides: on top of person_overrides, for this stage only, the source named
    cfg = {**fake_global, "train": {**fake_global["train"], "person_overrides": {"num_train_epochs": 6, "lora_rank": 8},
                                    "tokens_overrides": {"num_train_epochs": 12}}}
    t = render(cfg, "tokens", fold=0, kind="pooled", gpus="0")
    assert (t.args["num_train_epochs"], t.args["lora_rank"]) == (12, 8)
    bad = {**cfg, "train": {**cfg["train"], "tokens_overrides": {"lora_rnk": 32}}}
    with pytest.raises(ConfigError, match="train.tokens_overrides.lora_rnk: unknown swift sft key 'lora_rnk'"):
        render(bad, "tokens", fold=0, kind="pooled", gpus="0")
    assert render(cfg, "person", user=users[0], fold=0, gpus="0").args["num_train_epochs"] == 6


def test_kept_eval_base_leaves_the_card_only_where_it_lacks_room(monkeypatch):
    """eval.keep_loaded: the eval copy of the base stays on the GPU while the next fold trains only where the run's
    estimate + that copy + a CUDA context leave 10% of the card (the H200 preflight's person_lora 8B numbers)."""
    from swift_configs.sweep import eval_park

    gib = 2**30
    est = {"per_gpu_bytes": int(55.0 * gib), "parts": {"weights": int(16.3 * gib), "cuda_context": int(0.8 * gib)},
           "full": False, "qlora": False}
    monkeypatch.setenv("PIGG_GPU_MEMORY_GB", "79.6")  # an "80 GB" H100: 72.1 GiB > 90 %: to host memory
    assert eval_park({}, est, ["0"]) is True
    monkeypatch.setenv("PIGG_GPU_MEMORY_GB", "140")  # an H200: stays
    assert eval_park({}, est, ["0"]) is False
    assert eval_park({}, {**est, "full": True}, ["0"]) is True  # a full checkpoint's eval is not kept at all
    assert eval_park({}, None, ["0"]) is True  # no estimate (CPU, --force): the safe way


def _sleep_long():
    import time

    time.sleep(60)


def test_a_finished_training_run_stops_its_leftover_workers():
    """swift_configs/sft_main.py: child processes still alive when the run is over (the data loader's workers, each
    waited for 5 s at exit: 40 s after every 8B fold) are stopped at once."""
    import multiprocessing
    import time

    from swift_configs.sft_main import end_children

    kids = [multiprocessing.get_context("fork").Process(target=_sleep_long, daemon=True) for _ in range(2)]
    for k in kids:
        k.start()
    t = time.time()
    assert end_children() >= 2 and not any(k.is_alive() for k in kids) and time.time() - t < 5
    assert end_children() == 0


def test_kept_training_process_that_cannot_fork_cuda_leaves_runs_to_fresh_processes(tmp_path, capsys):
    """train.keep_loaded where GPUs are listed: swift_configs/train_serve.py forks a CUDA probe before it takes runs.
    Here a GPU is listed and none exists (as on any box without a driver): the probe fails, the server says why and
    the sweep's runs go to fresh processes (run() returns None) instead of failing forked. (With no driver, NVML
    cannot count GPUs, so torch's check falls back to the CUDA runtime while the server imports, which marks its
    forks as unable to start CUDA: the probe sees torch's "Cannot re-initialize CUDA in forked subprocess".)"""
    from types import SimpleNamespace

    from data_prep.runtime.procenv import child_env
    from swift_configs.train import TrainServer

    srv, run = TrainServer(), SimpleNamespace(yaml_path=tmp_path / "swift.yaml", run_dir=tmp_path)
    try:
        assert srv.run(run, child_env(devices="0"), tmp_path / "train.log") is None
    finally:
        srv.close()
    assert "a child forked from this process cannot use CUDA" in srv.off
    assert "Cannot re-initialize CUDA in forked subprocess" in srv.off or "NVIDIA driver" in srv.off, srv.off
    assert "runs start as fresh processes" in capsys.readouterr().out
    assert srv.run(run, child_env(devices="0"), tmp_path / "train.log") is None  # said once, then fresh at once
