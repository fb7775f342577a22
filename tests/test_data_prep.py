"""data_prep: action parsing, FingerTip reading (both layouts, every skip reason), determinism,
validate, import-pigg, config errors, and no heavy imports."""
from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest

from conftest import ROOT, run_cli, write_experiment
from data_prep.actions import ActionError, parse_action
from data_prep.config import ConfigError, load_experiment, parse_users
from data_prep.fingertip import SKIP_REASONS, build
from data_prep.store import BuildError, load_samples
from data_prep.schema import answer_text, prompt_text, to_grid


@pytest.mark.parametrize("text,name,point,content", [
    ("click(coordinates=(336, 1267), content='蓝色加号按钮')", "click", (336, 1267), "蓝色加号按钮"),
    ("click(coordinates=(1, 2), content='a, (b), \"c\"')", "click", (1, 2), 'a, (b), "c"'),
    ("click(coordinates=(1, 2), content=\"it's (here), ok\")", "click", (1, 2), "it's (here), ok"),
    ("long_click(coordinates=(10, 20), content='按住 (长按)')", "long_click", (10, 20), "按住 (长按)"),
    ("click(coordinates=(5, 6), content='it's broken, (quote)')", "click", (5, 6), "it's broken, (quote)"),
    ("click(coordinates=(5.5, 6), content='')", "click", (5.5, 6), ""),
])
def test_parse_click_hard_content(text, name, point, content):
    a = parse_action(text)
    assert (a.name, a.point, a.args["content"]) == (name, point, content)


@pytest.mark.parametrize("text,args", [
    ("type(text='hello, (world)')", {"text": "hello, (world)"}),
    ("scroll(coordinates=(540, 1200), direction='up')", {"coordinates": (540, 1200), "direction": "up"}),
    ("press_back()", {}), ("press_home()", {}), ("press_recent()", {}), ("wait()", {}), ("finished()", {}),
])
def test_parse_other_actions(text, args):
    assert parse_action(text).args == args


@pytest.mark.parametrize("text,reason", [
    ("double_tap(coordinates=(1, 2))", "unknown_action_type"),
    ("click(coordinates=(1, 2, 3), content='x')", "unparseable_action"),
    ("click(content='no point')", "unparseable_action"),
    ("scroll(coordinates=(1, 2), direction='sideways')", "unparseable_action"),
    ("not a call", "unparseable_action"),
    ("click(coordinates=(1, 2)", "unparseable_action"),
])
def test_parse_errors_have_reasons(text, reason):
    with pytest.raises(ActionError) as e:
        parse_action(text)
    assert e.value.reason == reason


def test_build_reads_both_layouts_and_counts_every_skip_reason(exp, synth_raw):
    rep = exp["report"]
    assert (synth_raw / "5" / "5").is_dir()  # user index 4 (raw 5) is nested
    users = json.loads((exp["tmp"] / "data" / "users.json").read_text())
    assert users == {"1": "1", "2": "3", "3": "4", "4": "5", "5": "6", "6": "9"}
    assert rep["samples_per_user"]["4"] > 0  # the nested user was read
    planted = {"malformed_json_line", "unparseable_action", "unknown_action_type", "missing_screenshot",
               "unreadable_screenshot", "click_outside_image", "missing_survey", "empty_intent"}
    assert {k: v for k, v in rep["skipped"].items()} == {k: 1 for k in planted}
    assert set(rep["skip_examples"]) == planted and set(rep["skipped"]) <= set(SKIP_REASONS)
    assert rep["actions"]["click"] >= rep["samples"] and rep["actions"]["finished"] > 0
    s = load_samples(exp["tmp"] / "data", [1])[1][0]
    assert (s.x, s.y) == (to_grid(s.x_px, s.width), to_grid(s.y_px, s.height)) and s.image.startswith("/")


def test_build_is_byte_identical_and_never_writes_raw(tmp_path, synth_raw):
    before = sorted(p.relative_to(synth_raw) for p in synth_raw.rglob("*"))
    build(synth_raw, tmp_path / "a", progress=False)
    build(synth_raw, tmp_path / "b", progress=False, workers=1)
    for f in sorted((tmp_path / "a").rglob("*.json*")):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes(), f
    assert sorted(p.relative_to(synth_raw) for p in synth_raw.rglob("*")) == before


def test_byte_order_mark_is_not_damage(tmp_path, synth_raw):
    """A Windows tool's BOM before line 1 of action.jsonl / survey_result.json loses no click."""
    raw = tmp_path / "raw"
    shutil.copytree(synth_raw, raw)
    base = build(raw, tmp_path / "a", progress=False)
    clicked = []
    for f in sorted(raw.rglob("action.jsonl")):
        first = f.read_text(encoding="utf-8").splitlines()[0]
        if "click(coordinates" in first and not first.startswith("{{"):
            clicked.append(f)
    assert len(clicked) >= 3
    for f in clicked:  # first lines that are clicks: without utf-8-sig each would be malformed_json_line
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
        survey = f.parent / "survey_result.json"
        if survey.exists():
            survey.write_bytes(b"\xef\xbb\xbf" + survey.read_bytes())
    rep = build(raw, tmp_path / "b", progress=False)
    assert rep["samples"] == base["samples"]
    assert rep["skipped"] == base["skipped"]  # real damage still counted, nothing new
    assert (tmp_path / "a" / "samples" / "user_1.jsonl").read_bytes() == \
        (tmp_path / "b" / "samples" / "user_1.jsonl").read_bytes()


def test_synthetic_test_users_disagree_on_the_same_screens(exp):
    """The case for personalization and user tokens: the test users share one phone (the same screenshots) and
    each prefers another element for every intent; a model that does not know who asks cannot serve both."""
    from collections import Counter

    samples = load_samples(exp["cfg"]["paths"]["data"], [1, 2])
    assert len({(s.width, s.height) for u in (1, 2) for s in samples[u]}) == 1
    favourite = {u: {} for u in (1, 2)}
    for u in (1, 2):
        by_intent = {}
        for s in samples[u]:
            by_intent.setdefault(s.instruction, []).append(s.content)
        favourite[u] = {i: Counter(c).most_common(1)[0][0] for i, c in by_intent.items() if len(c) >= 3}
    shared = set(favourite[1]) & set(favourite[2])
    assert len(shared) >= 3 and all(favourite[1][i] != favourite[2][i] for i in shared)


def test_synthetic_test_users_tap_distinct_slots_and_global_users_are_unchanged(tmp_path):
    """The test users' preferred elements sit in pairwise different places of the shared screen (candidates 0-2:
    a tag can win over pooling), and the global users' files are byte for byte those of before that change
    (the hash of their action lines, surveys and trees, pinned from the previous code)."""
    import hashlib

    from data_prep.synth import APPS, element_boxes, synth

    raw = tmp_path / "raw"
    r = synth(raw, users=6, episodes=6, seed=3, test_users=3, test_episodes=8)
    h = hashlib.sha256()
    for uid in r["raw_users"][3:]:
        for f in sorted((raw / str(uid)).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(raw)).encode())
                if f.suffix in (".jsonl", ".json", ".xml"):
                    h.update(f.read_bytes())
    assert h.hexdigest() == "3aef21f802df50f3e8437321574405175ea61b3f6922dc701fb5f100aba452f7"
    raw = tmp_path / "habits"  # the habits alone: no noisy taps
    r = synth(raw, users=3, episodes=1, seed=3, test_users=3, test_episodes=30, noise=0.0, defects=False)
    centres = {}
    for a, app in enumerate(APPS):
        for i, (intent, _) in enumerate(app["intents"]):
            centres[intent] = {name: ((b[0] + b[2]) // 2, (b[1] + b[3]) // 2) for name, b in element_boxes(a, i)}
    taps = {}  # (user, intent) -> the element's slot most tapped
    for u in r["raw_users"][:3]:
        for f in (raw / str(u)).rglob("action.jsonl"):
            survey = json.loads((f.parent / "survey_result.json").read_text(encoding="utf-8"))
            for line in f.read_text(encoding="utf-8").splitlines():
                act = next(iter(json.loads(line).values()))
                name = act.split("content='")[-1][:-2] if "content='" in act else None
                if name in centres[survey["intentDescription"]]:
                    taps.setdefault((u, survey["intentDescription"]), []).append(centres[survey["intentDescription"]][name])
    from collections import Counter

    for intent in {i for _, i in taps}:
        slots = [Counter(taps[(u, intent)]).most_common(1)[0][0] for u in r["raw_users"][:3] if (u, intent) in taps]
        assert len(slots) == len(set(slots)), (intent, slots)


def test_long_click_option(tmp_path, synth_raw):
    rep = build(synth_raw, tmp_path / "lc", actions=("click", "long_click"), progress=False)
    assert rep["samples"] > build(synth_raw, tmp_path / "c", progress=False)["samples"]


def test_not_a_fingertip_tree(tmp_path):
    (tmp_path / "raw" / "photos").mkdir(parents=True)
    with pytest.raises(BuildError, match="not a FingerTip-20K tree"):
        build(tmp_path / "raw", tmp_path / "out", progress=False)
    with pytest.raises(BuildError, match="never written"):
        build(tmp_path / "raw", tmp_path / "raw" / "out", progress=False)


def test_validate_finds_a_corrupted_sample(tmp_path, exp):
    data = tmp_path / "data"
    shutil.copytree(exp["tmp"] / "data", data)
    assert run_cli("-m", "data_prep", "validate", "--data", str(data), "--config", str(exp["path"])).returncode == 0
    f = data / "samples" / "user_1.jsonl"
    rows = [json.loads(x) for x in f.read_text().splitlines()]
    rows[0]["x"] += 7
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    p = run_cli("-m", "data_prep", "validate", "--data", str(data), "--config", str(exp["path"]), check=False)
    rep = json.loads(p.stdout)
    # its export rows: all.jsonl + 2 fold trains + 1 fold test, and per user-tag kind (3) 2 unions + 1 hold-out
    assert p.returncode == 1 and rep["errors"] == {"grid_mismatch": 1, "export_answer_mismatch": 4 + 3 * 3}


def test_import_pigg_round_trip(tmp_path, exp):
    """PIGG's pickled chat samples (system turn + image part + two-block answer) -> same samples."""
    orig = load_samples(exp["tmp"] / "data", [1])[1]
    pkl = [{"messages": [
        {"role": "system", "content": [{"type": "text", "text": "You are a GUI agent."}]},
        {"role": "user", "content": [{"type": "image", "image": "file://" + s.image},
                                     {"type": "text", "text": prompt_text(s.instruction)}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer_text(s.content, s.x, s.y)}]}]}
        for s in orig] + [[{"role": "user", "content": "no image"}]]
    (tmp_path / "pkl").mkdir()
    with open(tmp_path / "pkl" / "user_1.pkl", "wb") as f:
        pickle.dump(pkl, f)
    p = run_cli("-m", "data_prep", "import-pigg", "--pkl-dir", str(tmp_path / "pkl"), "--out", str(tmp_path / "d"))
    rep = json.loads(p.stdout)
    assert rep["samples"] == len(orig) and rep["skipped"] == {"no_image": 1}
    got = load_samples(tmp_path / "d", [1])[1]
    key = lambda s: (s.image, s.instruction, s.content, s.x, s.y, s.width, s.height, s.episode, s.raw_user)
    assert [key(s) for s in got] == [key(s) for s in orig]
    assert all((to_grid(s.x_px, s.width), to_grid(s.y_px, s.height)) == (s.x, s.y) for s in got)


class _Payload:
    """Unpickling this calls ``func(*args)``: what a hostile pickle does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_import_pigg_refuses_pickles_that_run_code(tmp_path, exp):
    """os.system / builtins.exec / subprocess payloads are refused before they run (the files they would
    write never appear), named with the refused global; the good user's file still imports; exit code 1."""
    import builtins
    import os as _os
    import subprocess as _sp

    s = load_samples(exp["tmp"] / "data", [1])[1][0]
    good = [{"messages": [
        {"role": "user", "content": [{"type": "image", "image": s.image},
                                     {"type": "text", "text": prompt_text(s.instruction)}]},
        {"role": "assistant", "content": answer_text(s.content, s.x, s.y)}]}]
    pkl, pwned = tmp_path / "pkl", tmp_path / "pwned"
    pkl.mkdir()
    hostile = {2: _Payload(_os.system, f"touch {pwned}_2"),
               3: _Payload(builtins.exec, f"open({str(pwned) + '_3'!r}, 'w').write('x')"),
               4: [good[0], _Payload(_sp.call, ["touch", f"{pwned}_4"])]}
    with open(pkl / "user_1.pkl", "wb") as f:
        pickle.dump(good, f, protocol=2)  # protocol 2: containers go through the allowed globals
    for u, obj in hostile.items():
        with open(pkl / f"user_{u}.pkl", "wb") as f:
            pickle.dump(obj, f)
    (pkl / "user_5.pkl").write_bytes(b"\x80\x04 not a pickle")
    p = run_cli("-m", "data_prep", "import-pigg", "--pkl-dir", str(pkl), "--out", str(tmp_path / "d"), check=False)
    assert p.returncode == 1, p.stderr
    assert not list(tmp_path.glob("pwned*"))  # nothing ran
    rep = json.loads(p.stdout)
    assert rep["samples"] == 1 and rep["users"] == 1 and load_samples(tmp_path / "d", [1])[1][0].image == s.image
    refused = rep["refused_files"]
    assert sorted(refused) == [str(pkl / f"user_{u}.pkl") for u in (2, 3, 4, 5)]
    assert "refused global posix.system" in refused[str(pkl / "user_2.pkl")]
    assert "refused global builtins.exec" in refused[str(pkl / "user_3.pkl")]
    assert "refused global subprocess.call" in refused[str(pkl / "user_4.pkl")]
    assert "not a readable pickle" in refused[str(pkl / "user_5.pkl")]
    assert not (tmp_path / "d" / "samples" / "user_4.jsonl").exists()  # its good first sample is not written
    assert "user_2.pkl: refused global posix.system" in p.stderr


def test_config_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: " + str(ROOT / "swift_configs/experiments/demo.yaml") + "\nfolds:\n  kk: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'folds.kk'"):
        load_experiment(bad)
    bad.write_text("base: " + str(ROOT / "swift_configs/experiments/demo.yaml") + "\nfolds:\n  k: three\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: 'folds.k' must be an integer"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="both test and global"):
        load_experiment(write_experiment(tmp_path, users__test="1-3", users__global="3-5"))
    assert load_experiment(None, ["folds.k=5"])["folds"]["k"] == 5
    assert parse_users("1-3,5") == [1, 2, 3, 5] and parse_users([11, "12-13"]) == [11, 12, 13]


def test_data_prep_imports_no_torch():
    code = ("import sys, data_prep.__main__, data_prep.fingertip, data_prep.export, data_prep.validate, "
            "data_prep.synth, data_prep.import_pigg, eval.parse, eval.metrics; "
            "bad = [m for m in ('torch', 'transformers', 'swift') if m in sys.modules]; "
            "assert not bad, bad")
    run_cli("-c", code)


def test_training_and_eval_sit_side_by_side():
    """data_prep at the bottom imports neither; swift_configs (training) never imports eval, eval never imports
    swift_configs (every import statement of every module, read from the source)."""
    import ast

    rule = {"data_prep": ("eval", "swift_configs"), "swift_configs": ("eval",), "eval": ("swift_configs",)}
    bad = []
    for pkg, banned in rule.items():
        for f in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
                bad += [f"{f.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in banned]
    assert not bad, bad


def test_layers_import_downwards_only(tmp_path):
    """Eval finds a run folder's checkpoint through data_prep.rundir, never through the training layer; the
    run-folder module and eval's memory arithmetic import no torch."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "DONE").write_text(f"checkpoint: {tmp_path / 'run' / 'checkpoint-7'}\n")
    code = ("import sys, pathlib, data_prep.rundir, data_prep.runtime.memory, eval.users, eval.report, eval.run; "
            f"ck = eval.users.resolve_checkpoint(pathlib.Path({str(tmp_path / 'run')!r})); "
            "assert ck.name == 'checkpoint-7', ck; "
            "bad = [m for m in sys.modules if m.startswith('swift_configs') or m in ('torch', 'swift')]; "
            "assert not bad, bad")
    run_cli("-c", code)


# names a string may not hold outside data_prep/rundir.py: a piece of a user/fold folder, a marker, the YAML folder
LAYOUT_PIECES = ("user_", "fold_", "user_tokens_", "DONE", "TRAINED", "generated")
LAYOUT_ALLOWED = {("data_prep/import_pigg.py", "user_*.pkl"): "PIGG's own input files, not our layout"}


def layout_strings(src: str) -> list[tuple[int, str]]:
    """(line, text) of every string in code (docstrings left out) that builds a run/data folder name: an
    f-string piece ending in user_/fold_ before a value, or a constant glob/marker/folder name."""
    import ast

    tree = ast.parse(src)
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = node.values
            for a, b in zip(parts, parts[1:]):
                if isinstance(a, ast.Constant) and isinstance(b, ast.FormattedValue) and \
                        str(a.value).split("/")[-1] in ("user_", "fold_", "user_tokens_"):
                    out.append((node.lineno, str(a.value)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            v = node.value
            if v in ("DONE", "TRAINED", "generated") or v.startswith(("user_*", "fold_*", "user_tokens_")) \
                    or "/user_*" in v or "/fold_*" in v:
                out.append((node.lineno, v))
    return out


def test_layout_strings_finds_hand_built_paths():
    src = 'd = base / f"user_{u}" / f"fold_{f}"\nm = d / "DONE"\ng = d.glob("user_*/out.json")\n' \
          'h = f"x/user_tokens_{k}"\n' \
          'def f():\n    """user_U/fold_F/DONE in a docstring is fine"""\n    return f"user {u}", "user_id", f"heatmap_user_{u}.png"\n'
    assert sorted(t for _, t in layout_strings(src)) == ["DONE", "fold_", "user_", "user_*/out.json", "x/user_tokens_"]


def test_run_and_data_folder_names_have_one_owner():
    """Only data_prep/rundir.py builds user_U / fold_F / user_tokens_<kind> paths, markers and the
    generated-YAML folder; every package and script is read (tests and rundir itself excepted)."""
    bad = []
    for pkg in ("data_prep", "swift_configs", "eval", "bench", "scripts"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            rel = f.relative_to(ROOT).as_posix()
            if rel == "data_prep/rundir.py":
                continue
            bad += [f"{rel}:{line} {text!r}" for line, text in layout_strings(f.read_text(encoding="utf-8"))
                    if (rel, text) not in LAYOUT_ALLOWED]
    assert not bad, "build these through data_prep/rundir.py:\n" + "\n".join(bad)


def test_an_eval_child_loads_the_experiment_as_its_parent(tmp_path):
    """data_prep/procenv.eval_child: the one way a device-isolated eval process starts (sweeps, eval's shards): the
    parent's config file and overrides, the adapters, (data, out) pairs, the flags given; its device, offline flags,
    project on PYTHONPATH and the experiment's image budget in the environment."""
    from data_prep.runtime.procenv import ROOT as PROJECT, eval_child

    cfg = load_experiment(write_experiment(tmp_path), ["image_max_token_num=77", "eval.delta=100"])
    cmd, env = eval_child(cfg, "/m", ["/a1"], [(tmp_path / "d.jsonl", tmp_path / "o")], "1", shard=0, batch_size=None)
    assert cmd[1:] == ["-m", "eval.run", "--config", cfg["config_path"], "--model", "/m", "--devices", "1",
                       "--set", "image_max_token_num=77", "--set", "eval.delta=100", "--adapters", "/a1",
                       "--data", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "o"), "--shard", "0"]
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["IMAGE_MAX_TOKEN_NUM"] == "77" and env["HF_HUB_OFFLINE"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(PROJECT)
