"""Never a wrong number with exit 0: outputs that know what made them, writes that finish or never happened, one
process per folder, one declared config schema, bad input skipped and counted, launchers that behave."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli, write_experiment

from data_prep.config import ConfigError, load_experiment
from data_prep.io import read_json, write_json
from data_prep.provenance import ProvenanceError, model_identity
from data_prep.runtime.lock import FolderLock, LockedError
from data_prep.store import BuildError, build_record, load_samples


def other_model(tiny_model: Path, tmp: Path) -> Path:
    """The tiny model's weights under another config (one more key): another model to the provenance check."""
    out = tmp / "other-model"
    out.mkdir()
    for f in tiny_model.iterdir():
        if f.is_file() and f.name != "config.json":
            os.symlink(f, out / f.name)
    cfg = json.loads((tiny_model / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "pigg_note": "another model"}))
    return out


# ---- provenance of an eval folder
def test_eval_refuses_answers_another_model_made(exp, tiny_model, tmp_path):
    """A folder answered by one model: another model, another setting, or answers without a record are refused
    before any model loads (no answer written, the old ones kept); the refusal names what differs and the ways
    out; --fresh empties the folder and records the new maker."""
    from data_prep.provenance import eval_record as provenance
    from eval.job import claim, evaluate

    cfg = {**exp["cfg"], "paths": {**exp["cfg"]["paths"], "model": str(tiny_model)}}
    data = Path(exp["cfg"]["paths"]["data"]) / "swift/user_1/all.jsonl"
    out = tmp_path / "out"
    claim(out, provenance(cfg, model_identity(tiny_model), [], data, 40), fresh=False)
    line = json.dumps({"id": "x", "raw": "a", "pred": [1, 2], "pred_pigg": [1, 2], "gt": [3, 4]}) + "\n"
    (out / "predictions.jsonl").write_text(line)
    with pytest.raises(ProvenanceError, match=r"model.fingerprint: .* \(.*tiny-qwen3-vl -> .*other-model\)(.|\n)*--fresh"):
        evaluate(cfg, str(other_model(tiny_model, tmp_path)), [], [(data, out)], ["cpu"])
    with pytest.raises(ProvenanceError, match=r"decoding.max_new_tokens: 40 -> 7"):
        evaluate(cfg, str(tiny_model), [], [(data, out)], ["cpu"], max_new_tokens=7)
    assert (out / "predictions.jsonl").read_text() == line
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "predictions.jsonl").write_text(line)
    with pytest.raises(ProvenanceError, match="holds answers but no provenance.json"):
        evaluate(cfg, str(tiny_model), [], [(data, legacy)], ["cpu"])
    new = provenance(cfg, model_identity(tiny_model), [], data, 7)
    claim(out, new, fresh=True)
    assert not (out / "predictions.jsonl").exists() and read_json(out / "provenance.json") == new


def test_eval_cli_refusal_is_one_line_exit_2(exp, tiny_model, tmp_path):
    from data_prep.provenance import eval_record as provenance
    from eval.job import claim

    data = Path(exp["cfg"]["paths"]["data"]) / "swift/user_1/all.jsonl"
    claim(tmp_path / "o", provenance(exp["cfg"], model_identity(tmp_path), [], data, 40), fresh=False)
    p = run_cli("-m", "eval.run", "--config", str(exp["path"]), "--model", str(tiny_model), "--data", str(data),
                "--out", str(tmp_path / "o"), check=False)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    assert "model.fingerprint" in p.stderr
    p = run_cli("-m", "eval.run", "--config", str(exp["path"]), "--model", str(tiny_model), "--data", str(data),
                "--out", str(tmp_path / "o"), "--max-new-tokens", "0", check=False)
    assert p.returncode == 2 and "want a positive integer" in p.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this box has a GPU")
def test_a_gpu_asked_for_and_missing_is_an_error(exp, tiny_model, tmp_path):
    from eval.engine import EvalError, check_devices
    from eval.job import evaluate

    with pytest.raises(EvalError, match=r"--devices 0: no usable CUDA GPU .*device\(s\) visible"):
        check_devices(["0"])
    data = Path(exp["cfg"]["paths"]["data"]) / "swift/user_1/all.jsonl"
    with pytest.raises(EvalError, match="no usable CUDA GPU"):
        evaluate(exp["cfg"], str(tiny_model), [], [(data, tmp_path / "o")], ["0"])
    assert not (tmp_path / "o").exists()


def test_torn_and_malformed_predictions_are_dropped_and_answered_again(tmp_path, capsys):
    from eval.job import read_predictions

    good = {"id": "a", "raw": "x", "pred": None, "pred_pigg": [0, 0], "gt": [5, 5]}
    torn = json.dumps({"id": "b", "raw": "点击", "pred": None, "pred_pigg": [0, 0], "gt": [1, 1]},
                      ensure_ascii=False).encode()
    body = b"\n".join([json.dumps(good).encode(), b"{}", b"42", b'{"id": "c"}',
                       json.dumps({**good, "id": "d", "gt": None}).encode(), torn[:torn.index("点".encode()) + 1]])
    (tmp_path / "predictions.jsonl").write_bytes(body)
    assert list(read_predictions(tmp_path)) == ["a"]
    assert "1 torn and 4 malformed line(s) dropped" in capsys.readouterr().err
    assert (tmp_path / "predictions.jsonl").read_bytes() == json.dumps(good).encode() + b"\n"
    assert list(read_predictions(tmp_path)) == ["a"] and capsys.readouterr().err == ""


# ---- writes that finish or never happened
def _small_build(tmp: Path, synth_raw: Path) -> Path:
    from data_prep.fingertip import build

    data = tmp / "data"
    build(synth_raw, data, progress=False, workers=1)
    return data


def test_an_interrupted_build_leaves_the_old_set_or_nothing_trusted(tmp_path, synth_raw, monkeypatch):
    import data_prep.store as store
    from data_prep.fingertip import build

    data = _small_build(tmp_path, synth_raw)
    before = build_record(data)
    real, calls = store.write_jsonl, []

    def dies_on_third(path, rows):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, rows)

    monkeypatch.setattr(store, "write_jsonl", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        build(synth_raw, data, progress=False, workers=1)
    assert build_record(data) == before and sum(map(len, load_samples(data).values())) == sum(
        u["rows"] for u in before["users"].values())  # the previous complete set, untouched
    monkeypatch.setattr(store, "write_jsonl", real)
    monkeypatch.setattr(store, "swap_in", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        build(synth_raw, data, progress=False, workers=1)
    with pytest.raises(BuildError, match="no complete build"):
        load_samples(data)


def test_a_missing_user_file_is_refused_not_read_as_empty(tmp_path, synth_raw):
    data = _small_build(tmp_path, synth_raw)
    (data / "samples" / "user_4.jsonl").unlink()
    with pytest.raises(BuildError, match="user_4.jsonl: missing, but .*build.json lists it"):
        load_samples(data)
    (data / "samples" / "user_4.jsonl").write_text("")
    with pytest.raises(BuildError, match=r"user_4.jsonl: 0 rows, the build recorded \d+"):
        load_samples(data, [4])


def test_export_refuses_listed_users_without_samples_and_an_interrupted_export_keeps_the_old(
        tmp_path, synth_raw, monkeypatch):
    import data_prep.export as ex

    data = _small_build(tmp_path, synth_raw)
    cfg = load_experiment(write_experiment(tmp_path, users__test="1-2", users__global="3-6"),
                          [f"paths.data={data}"])
    ex.export(cfg)
    manifest = read_json(data / "swift/export.json")
    with pytest.raises(ex.ExportError, match=r"users.global lists users \[7, 8\] that have no samples"):
        ex.export(load_experiment(cfg["config_path"], [f"paths.data={data}", "users.global=3-8"]), force=True)
    real = ex.write_jsonl
    monkeypatch.setattr(ex, "write_jsonl", lambda p, rows: (_ for _ in ()).throw(KeyboardInterrupt())
                        if "fold_1" in str(p) else real(p, rows))
    with pytest.raises(KeyboardInterrupt):
        ex.export(load_experiment(cfg["config_path"], [f"paths.data={data}", "folds.k=4"]), force=True)
    assert read_json(data / "swift/export.json") == manifest
    assert len(list((data / "swift/user_1").glob("fold_*"))) == 3


def test_stages_refuse_an_export_made_with_other_settings_or_from_another_build(exp, tmp_path):
    from data_prep.export import ExportError, check_export

    cfg = exp["cfg"]
    check_export(cfg)
    for ov, what in (("folds.k=2", "k: 3 -> 2"), ("folds.mode=episode", 'mode: "random" -> "episode"'),
                     ("users.test=1", "test_users")):
        with pytest.raises(ExportError, match=what):
            check_export(load_experiment(exp["path"], [ov, f"paths.data={cfg['paths']['data']}"]))
    copy = tmp_path / "data"
    shutil.copytree(cfg["paths"]["data"], copy)
    rec = read_json(copy / "build.json")
    write_json(copy / "build.json", {**rec, "fingerprint": "another build"})
    with pytest.raises(ExportError, match="another build"):
        check_export({**cfg, "paths": {**cfg["paths"], "data": str(copy)}})


def test_imports_into_existing_data_refuse_unless_force_which_replaces(tmp_path, synth_raw):
    shot = next(synth_raw.rglob("*.jpg"))
    recs = tmp_path / "r.jsonl"
    recs.write_text(json.dumps({"user": "u9", "screenshot": str(shot), "instruction": "tap", "x_px": 1, "y_px": 1}) + "\n")
    data = _small_build(tmp_path, synth_raw)
    p = run_cli("-m", "data_prep", "import-clicks", "--records", str(recs), "--out", str(data), check=False)
    assert p.returncode == 2 and "already holds a sample set" in p.stderr and "--force" in p.stderr
    run_cli("-m", "data_prep", "import-clicks", "--records", str(recs), "--out", str(data), "--force")
    assert read_json(data / "users.json") == {"1": "u9"} and sorted(p.name for p in (data / "samples").iterdir()) == [
        "user_1.jsonl"]
    assert list(load_samples(data)) == [1]


def _huge_png(path: Path, w: int = 30000, h: int = 30000) -> None:
    """A PNG whose header declares w x h pixels (Pillow refuses it as a decompression bomb on open)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                     chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_oversized_and_corrupt_screenshots_are_skipped_and_counted(tmp_path, synth_raw):
    from data_prep.fingertip import build
    from data_prep.import_clicks import import_clicks
    from data_prep.import_pigg import convert

    raw = tmp_path / "raw"
    shutil.copytree(synth_raw / "3", raw / "3")
    episodes = sorted(p for p in (raw / "3").iterdir() if '": "click(' in (p / "action.jsonl").read_text())
    for shot in episodes[0].rglob("*.jpg"):  # every screenshot of one episode declares 30000 x 30000 px
        _huge_png(shot)
    for shot in episodes[1].rglob("*.jpg"):  # and of another is no image at all
        shot.write_bytes(b"not an image")
    rep = build(raw, tmp_path / "data", progress=False, workers=1)
    assert rep["skipped"]["oversized_screenshot"] >= 1 and rep["skipped"]["unreadable_screenshot"] >= 1
    assert rep["samples"] > 0 and any("900000000 px, over Pillow's decompression-bomb limit" in e
                                      for e in rep["skip_examples"]["oversized_screenshot"])
    shots = sorted(episodes[0].rglob("*.jpg"))[:1] + sorted(episodes[1].rglob("*.jpg"))[:1] + sorted(
        episodes[2].rglob("*.jpg"))[:1]
    recs = tmp_path / "r.jsonl"
    recs.write_text("".join(json.dumps({"user": 1, "screenshot": str(s), "instruction": "t", "x_px": 1, "y_px": 1}) + "\n"
                            for s in shots[:3]))
    rep = import_clicks(recs, tmp_path / "clicks")
    assert rep["skipped"] == {"oversized_screenshot": 1, "unreadable_screenshot": 1} and rep["samples"] == 1
    msg = [{"role": "user", "content": [{"type": "image", "image": str(shots[0])}, {"type": "text", "text": "t"}]},
           {"role": "assistant", "content": "```grounding\n[1, 2]\n```"}]
    assert convert(msg, 1, 0) == (None, "oversized_screenshot")
    assert convert([{**msg[0], "content": [{"type": "image", "image": str(shots[1])}]}, msg[1]], 1, 0) == (
        None, "unreadable_screenshot")


# ---- one process per folder
def _hold(folder: Path) -> subprocess.Popen:
    code = ("import sys, time; from data_prep.runtime.lock import FolderLock; "
            f"FolderLock({str(folder)!r}).acquire(); print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_held_folder_stops_a_second_process_and_a_killed_holder_frees_it(tmp_path, synth_raw):
    holder = _hold(tmp_path / "run")
    try:
        with pytest.raises(LockedError, match=rf"in use by another process \(pid {holder.pid}: -c\)"):
            FolderLock(tmp_path / "run").acquire()
        data = _small_build(tmp_path, synth_raw)
        path = write_experiment(tmp_path, users__test="1-2", users__global="3-6", paths__data=str(data))
        held = _hold(data)
        try:
            p = run_cli("-m", "data_prep", "export", "--config", str(path), check=False)
            assert p.returncode == 2 and f"pid {held.pid}" in p.stderr and "data folder" in p.stderr
            assert not (data / "swift").exists()
            assert run_cli("-m", "data_prep", "export", "--config", str(path), "--dry-run").returncode == 0
        finally:
            held.kill()
            held.wait()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with FolderLock(tmp_path / "run"):
        pass


# ---- the declared config schema
@pytest.mark.parametrize("change,match", [
    (("eval", "deltaa", 5), r"unknown key 'eval.deltaa'"),
    ((None, "foo", 1), r"unknown key 'foo'"),
    (("eval", "delta", -5), r"'eval.delta' must be > 0"),
    ((None, "image_max_token_num", 0), r"'image_max_token_num' must be >= 1"),
    (("folds", "k", "three"), r"'folds.k' must be an integer"),
    (("folds", "mode", "blocks"), r"'folds.mode' must be one of \['random', 'episode'\]"),
    ((None, "name", "../../x"), r"'name' must be a plain folder name"),
    (("paths", "model", None), r"required key\(s\) missing: \['paths.model'\]"),
])
def test_an_experiment_without_base_is_checked_against_the_schema(tmp_path, change, match):
    raw = yaml.safe_load((ROOT / "swift_configs/experiments/pigg.yaml").read_text())
    sect, key, val = change
    node = raw if sect is None else raw[sect]
    if val is None:
        del node[key]
    else:
        node[key] = val
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"e.yaml: {match}"):
        load_experiment(path)


def test_base_cycles_bad_overrides_and_paths_from_the_command_line(tmp_path, monkeypatch):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"base: cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_experiment(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match=r"<command line>: 'folds.k': the value '\[1,' is not valid YAML"):
        load_experiment("demo", ["folds.k=[1,"])
    with pytest.raises(ConfigError, match=r"'paths.data' must be non-empty"):
        load_experiment("demo", ["paths.data="])
    monkeypatch.chdir(tmp_path)
    cfg = load_experiment("demo", ["paths.data=here/data", "train.person_base=./ckpt"])
    assert cfg["paths"]["data"] == str(tmp_path / "here/data") and cfg["train"]["person_base"] == str(tmp_path / "ckpt")
    # a child process (started in the project root) gets the overrides with those paths absolute
    assert cfg["overrides"] == [f"paths.data={tmp_path / 'here/data'}", f"train.person_base={tmp_path / 'ckpt'}"]
    assert load_experiment("demo")["paths"]["data"] == str(ROOT / "data/demo")  # a file's paths: the project root
    (tmp_path / "mine.yaml").write_text("base: " + str(ROOT / "swift_configs/experiments/demo.yaml") + "\nname: mine\n")
    assert load_experiment("mine.yaml")["name"] == "mine"  # a relative --config: from where the user stands


def test_pigg_yaml_holds_the_schema_defaults_and_the_reference_is_current():
    from data_prep.config_schema import REQUIRED, SCHEMA, markdown
    from data_prep.family import FAMILIES
    from eval.profiles import PROFILES

    raw = yaml.safe_load((ROOT / "swift_configs/experiments/pigg.yaml").read_text())
    cfg = load_experiment("pigg")
    for k in SCHEMA:
        node = raw
        for part in k.key.split("."):
            node = node[part]
        if k.default is not REQUIRED:
            assert node == k.default, k.key
    assert cfg["eval"]["delta"] == 140.0
    assert (ROOT / "docs/config.md").read_text(encoding="utf-8") == markdown(), \
        "docs/config.md is stale: python -m data_prep.config_schema > docs/config.md"
    by = {k.key: k for k in SCHEMA}
    assert set(by["eval.profile"].choices) == set(PROFILES) and set(by["model.family"].choices) == set(FAMILIES)
    templates = {p.stem for p in (ROOT / "swift_configs/templates").glob("*.yaml")}
    assert set(by["train.global_template"].choices) | set(by["train.person_template"].choices) == templates


def test_swift_keys_out_of_range_are_refused_before_a_model_loads(exp, tiny_model):
    from swift_configs.generate import render

    cfg = load_experiment(exp["path"], [f"paths.model={tiny_model}", f"paths.data={exp['cfg']['paths']['data']}"])
    with pytest.raises(ConfigError, match=r"command line: lora_rank=-1: 'lora_rank' must be >= 1, got -1"):
        render(cfg, "global", overrides=["lora_rank=-1"])
    with pytest.raises(ConfigError, match=r"'learning_rate' must be > 0"):
        render(cfg, "global", overrides=["learning_rate=0"])


# ---- training runs reuse only what matches
def test_a_run_folder_made_by_other_settings_is_refused(exp, tiny_model):
    from swift_configs.generate import render
    from swift_configs.train import prepare

    cfg = load_experiment(exp["path"], [f"paths.model={tiny_model}", f"paths.data={exp['cfg']['paths']['data']}",
                                        "name=prov"])
    run = render(cfg, "global")
    assert prepare(run, build="b1") is not None
    man = read_json(run.run_dir / "manifest.json")
    assert man["provenance"]["base_model"]["fingerprint"] == model_identity(tiny_model)["fingerprint"]
    with pytest.raises(ProvenanceError, match=r"swift_yaml.args.learning_rate: 0.01 -> 0.5"):
        prepare(render(cfg, "global", overrides=["learning_rate=0.5"]), build="b1")
    with pytest.raises(ProvenanceError, match=r"build: \"b1\" -> \"b2\""):
        prepare(render(cfg, "global"), build="b2")
    (run.run_dir / "manifest.json").unlink()
    (run.run_dir / "TRAINED").write_text("checkpoint: x\n")
    with pytest.raises(ProvenanceError, match="no provenance record"):
        prepare(render(cfg, "global"), build="b1")
    assert prepare(render(cfg, "global"), fresh=True, build="b1") is not None


def test_summaries_refuse_folds_scored_on_different_builds():
    from data_prep.summary import overall, summarize_folds

    agg = {"accuracy": 0.5, "mean_l2": 1.0, "median_l2": 1.0}
    fold = {"n": 2, "pigg": agg, "corrected": agg, "parse_fail_rate": 0.0, "element_hit_rate": None}
    a, b = ({**fold, "provenance": {"build": x}} for x in ("build-a", "build-b"))
    assert summarize_folds([a, a], 1)["provenance"] == {"build": "build-a"}
    with pytest.raises(ProvenanceError, match="user 1's folds: .* 2 different builds"):
        summarize_folds([a, b], 1)
    with pytest.raises(ProvenanceError, match="2 different builds"):
        overall([summarize_folds([a], 1), summarize_folds([b], 2)])


# ---- launchers
LAUNCHERS = sorted(p.name for p in (ROOT / "scripts").glob("*.sh") if p.name != "common.sh")


def test_every_launcher_prints_its_usage_and_options_on_help():
    for name in LAUNCHERS:
        p = subprocess.run(["bash", str(ROOT / "scripts" / name), "--help"], capture_output=True, text=True,
                           cwd="/", timeout=120, env={**os.environ, "PYTHONPATH": ""})
        assert p.returncode == 0, (name, p.stderr[-500:])
        assert "Usage" in p.stdout or "usage:" in p.stdout, name
        if name[0].isdigit():
            assert "--config" in p.stdout, name  # every option of its entry point, not just a usage line


def readme_commands() -> list[str]:
    """The launcher and data_prep commands the README shows (its bash blocks), as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```bash")[1:]]
    cmds = []
    for b in blocks:
        for line in b.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("bash scripts/", "python -m data_prep")) and "demo.sh" not in line:
                cmds.append(line)
    return cmds


def test_the_readme_commands_work_when_copied(exp, tiny_model, tmp_path):
    """Each command the README shows, in its dry-run form, run as a user would: from a directory holding
    swift_configs/experiments/pigg.yaml (here: the small experiment under that name) and its runs/, with the
    launcher path as written."""
    cmds = readme_commands()
    assert len(cmds) >= 7 and any("4_finetune_person" in c for c in cmds)
    (tmp_path / "swift_configs/experiments").mkdir(parents=True)
    os.symlink(ROOT / "scripts", tmp_path / "scripts")
    cfg = yaml.safe_load(exp["path"].read_text())
    cfg.update(name="pigg", paths={"raw": str(exp["cfg"]["paths"]["raw"]), "data": exp["cfg"]["paths"]["data"],
                                   "runs": str(tmp_path / "runs"), "model": str(tiny_model)})
    (tmp_path / "swift_configs/experiments/pigg.yaml").write_text(yaml.safe_dump(cfg))
    glob = tmp_path / "runs/pigg/global_full"
    glob.mkdir(parents=True)
    (glob / "DONE").write_text(f"checkpoint: {tiny_model}\n")
    fold = tmp_path / "runs/pigg/person_lora/user_1/fold_0"
    (fold / "checkpoint-1").mkdir(parents=True)
    (fold / "checkpoint-1/adapter_config.json").write_text("{}")
    (fold / "DONE").write_text(f"checkpoint: {fold / 'checkpoint-1'}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for cmd in cmds:
        argv = shlex.split(cmd) + ([] if " validate " in f" {cmd} " else ["--dry-run"])  # validate only reads
        if argv[:3] == ["python", "-m", "data_prep"]:
            argv[0] = sys.executable
        p = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"{cmd}\n{p.stdout[-1500:]}\n{p.stderr[-2500:]}"


def test_a_done_fold_is_reused_only_where_its_evaluation_matches(exp, tiny_model, tmp_path):
    """The sweeps skip a DONE job only where its hold-out was answered by its checkpoint with the experiment's eval
    settings now (a changed eval.max_new_tokens, or an evaluation without a record, is refused)."""
    from data_prep.provenance import eval_record
    from swift_configs.generate import render
    from swift_configs.sweep import Job, Target, check_done_evals

    ov = [f"paths.model={tiny_model}", f"paths.data={exp['cfg']['paths']['data']}", f"paths.runs={tmp_path / 'runs'}"]
    cfg = load_experiment(exp["path"], ov)
    run = render(cfg, "global")
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "TRAINED").write_text(f"checkpoint: {tiny_model}\n")
    data = Path(cfg["paths"]["data"]) / "swift/user_1/all.jsonl"
    job = Job("the run", lambda d: run, [Target(1, data, tmp_path / "fold")], run=run)
    with pytest.raises(ProvenanceError, match="DONE, but its evaluation has no provenance.json"):
        check_done_evals(cfg, job)
    write_json(tmp_path / "fold/eval/provenance.json", eval_record(cfg, model_identity(tiny_model), [], data, 40))
    check_done_evals(cfg, job)
    with pytest.raises(ProvenanceError, match=r"decoding.max_new_tokens: 40 -> 30(.|\n)*--fresh"):
        check_done_evals(load_experiment(exp["path"], ov + ["eval.max_new_tokens=30"]), job)


def test_person_base_names_a_finished_run_or_a_checkpoint_by_path(tmp_path):
    """train.person_base: a stage name is its DONE marker's checkpoint (None while unfinished); a path to a run folder
    (as --set makes it absolute) stands for the run's final checkpoint, a checkpoint path for itself."""
    from data_prep.rundir import person_base

    run = tmp_path / "runs" / "e" / "global_full"
    (run / "checkpoint-8").mkdir(parents=True)
    cfg = {"name": "e", "paths": {"runs": str(tmp_path / "runs")}, "train": {"person_base": "global_full"}}
    assert person_base(cfg) is None
    (run / "DONE").write_text(f"checkpoint: {run / 'checkpoint-8'}\n")
    assert person_base(cfg) == run / "checkpoint-8"
    for given in (run, run / "checkpoint-8"):
        assert person_base({**cfg, "train": {"person_base": str(given)}}) == run / "checkpoint-8"
