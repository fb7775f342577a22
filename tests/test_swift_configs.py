"""Generated swift YAMLs: the committed argument table, swift's own parser, validation messages."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import ROOT, run_cli
from data_prep.config import ConfigError, load_experiment, run_dir
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
    ("person", "person_lora", "cpu"), ("person", "person_full", "0"),
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
    if template.endswith("lora"):
        assert ns.lora_dropout == 0.1 and ns.lora_rank == 8 and ns.lora_alpha == 32


def test_pigg_defaults_in_templates(fake_global):
    g = render(load_experiment("pigg", ["paths.data=" + fake_global["paths"]["data"],
                                        "paths.model=" + fake_global["paths"]["model"]]), "global", gpus="0").args
    assert (g["learning_rate"], g["num_train_epochs"], g["per_device_train_batch_size"],
            g["gradient_accumulation_steps"], g["warmup_steps"], g["weight_decay"]) == (1e-6, 1, 1, 8, 50, 0.01)
    assert g["tuner_type"] == "full" and g["torch_dtype"] == "bfloat16" and g["gradient_checkpointing"]


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
