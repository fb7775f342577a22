"""Real swift sft and real generation on the tiny Qwen3-VL (CPU): training stages, frozen vision,
LoRA placement, eval encoding = training encoding minus the answer, kill/resume of eval and of the
personalized K-fold launcher."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from conftest import ROOT, run_cli, write_experiment
from data_prep.config import load_experiment
from data_prep.rundir import run_dir
from data_prep.patches import epoch_prefetch
from data_prep.export import export
from data_prep.fingertip import build

pytestmark = pytest.mark.slow
TRAINED = pytest.mark.xdist_group("e2e")  # the tests that train or read the module's trained runs share one worker;
# the eval tests need only the tiny model and the exported data (the module fixture, rebuilt on another worker)
FAST = {"train__global_overrides__num_train_epochs": 1, "train__person_overrides__num_train_epochs": 2,
        "train__person_overrides__per_device_train_batch_size": 4, "eval__max_new_tokens": 24}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, synth_raw, tiny_model):
    tmp = tmp_path_factory.mktemp("e2e")
    path = write_experiment(tmp, users__test="1-2", users__global="3-6", **FAST)
    cfg = load_experiment(path, [f"paths.model={tiny_model}", f"paths.raw={synth_raw}"])
    build(synth_raw, cfg["paths"]["data"], progress=False)
    export(cfg)
    ov = ["--set", f"paths.model={tiny_model}"]
    return {"cfg": cfg, "path": str(path), "ov": ov, "model": tiny_model}


def visual_tensors(folder: Path) -> dict:
    out = {}
    for f in folder.glob("*.safetensors"):
        out.update({k: v for k, v in load_file(f).items() if ".visual." in k or k.startswith("visual.")})
    return out


def eval_requests(e2e, n: int, max_tokens: int, **engine_kw):
    """A CPU engine (batches of 3) on the tiny model, user 1's first n eval requests, and a greedy
    request config with log-probs."""
    from swift.infer_engine import InferRequest, RequestConfig

    from eval.engine import build_engine
    from eval.job import load_rows

    os.environ["IMAGE_MAX_TOKEN_NUM"] = str(e2e["cfg"]["image_max_token_num"])
    engine = build_engine(str(e2e["model"]), [], 3, "cpu", **engine_kw)
    rows = load_rows(Path(e2e["cfg"]["paths"]["data"]) / "swift" / "user_1" / "all.jsonl")[:n]
    reqs = [InferRequest(messages=r["messages"][:1], images=r["images"]) for _, r in rows]
    return engine, reqs, RequestConfig(max_tokens=max_tokens, temperature=0, logprobs=True)


@TRAINED
def test_global_full_keeps_vision_frozen_and_loads(e2e):
    run_cli("-m", "swift_configs.train", "--config", e2e["path"], *e2e["ov"], "--full")
    d = run_dir(e2e["cfg"], "global_full")
    ckpt = Path(yaml.safe_load((d / "DONE").read_text())["checkpoint"])
    man = json.loads((d / "manifest.json").read_text())
    assert man["versions"]["ms-swift"] == "4.6.0" and man["provenance"]["data"] and "swift sft" in man["command"]
    assert man["provenance"]["base_model"]["path"] == str(e2e["model"].resolve()) and man["provenance"]["build"]
    base, new = visual_tensors(e2e["model"]), visual_tensors(ckpt)
    assert base and set(base) == set(new)
    assert all(base[k].equal(new[k]) for k in base), "vision tower / aligner changed"
    b_all, n_all = load_file(e2e["model"] / "model.safetensors"), load_file(next(ckpt.glob("*.safetensors")))
    lm = [k for k in b_all if "language_model" in k and k in n_all]
    assert any(not b_all[k].equal(n_all[k]) for k in lm), "nothing was trained"
    # a second launch is a no-op (DONE)
    p = run_cli("-m", "swift_configs.train", "--config", e2e["path"], *e2e["ov"], "--full")
    assert "already trained" in p.stdout


@TRAINED
def test_global_lora_touches_only_the_language_model(e2e):
    run_cli("-m", "swift_configs.train", "--config", e2e["path"], *e2e["ov"], "--lora")
    ckpt = Path(yaml.safe_load((run_dir(e2e["cfg"], "global_lora") / "DONE").read_text())["checkpoint"])
    keys = list(load_file(ckpt / "adapter_model.safetensors"))
    assert keys and all("language_model" in k for k in keys) and not any("visual" in k for k in keys)
    assert {k.split(".")[-3] for k in keys if "lora_A" in k} >= {"q_proj", "v_proj", "down_proj"}
    assert not any("lm_head" in k for k in keys)


def test_eval_input_is_training_encoding_minus_answer(e2e):
    from swift.infer_engine import InferRequest

    from eval.engine import build_engine
    from eval.job import load_rows

    os.environ["IMAGE_MAX_TOKEN_NUM"] = str(e2e["cfg"]["image_max_token_num"])
    engine = build_engine(str(e2e["model"]), [], 2, "cpu")
    t = engine.template
    sid, row = load_rows(Path(e2e["cfg"]["paths"]["data"]) / "swift" / "user_1" / "all.jsonl")[0]
    t.set_mode("train")
    train = t.encode(row)
    t.set_mode("transformers")
    infer = t.encode(InferRequest(messages=row["messages"][:1], images=row["images"]))
    n = len(infer["input_ids"])
    assert train["input_ids"][:n] == infer["input_ids"]
    assert all(x == -100 for x in train["labels"][:n]) and all(x != -100 for x in train["labels"][n:])
    answer = t.tokenizer.decode(train["input_ids"][n:])
    assert answer.startswith(row["messages"][1]["content"]) and "<|im_end|>" in answer
    image_tokens = infer["input_ids"].count(151655)
    assert 0 < image_tokens <= e2e["cfg"]["image_max_token_num"]


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_batch_padded_to_a_multiple_keeps_the_loss(e2e, family, request):
    """train.pad_to_multiple (data_prep/patches/pad_multiple.py; applied on CUDA): swift's own collator with the batch padded
    to the longest row rounded up to 64 tokens. The rows' tokens, labels and mask are unchanged in the first columns,
    the padding is pad / -100 / mask 0, and the tiny model's loss is the same as on the unpadded batch (both
    families: their collators compute the 3D rope positions from the mask)."""
    import copy

    import torch

    from data_prep.family import FAMILIES
    from data_prep.patches.pad_multiple import collate
    from eval.engine import build_engine
    from eval.job import load_rows

    fam = FAMILIES[family]
    model = e2e["model"] if family == "qwen3_vl" else request.getfixturevalue("tiny25")
    os.environ["IMAGE_MAX_TOKEN_NUM"] = str(e2e["cfg"]["image_max_token_num"])
    engine = build_engine(str(model), [], 2, "cpu", model_type=fam.model_type, template_type=fam.template)
    t, model = engine.template, engine.model
    t.set_mode("train")
    t.model = model  # the trainer's template has its model (Qwen3-VL's collator asks it for the 3D positions)
    try:
        rows = [t.encode(r) for _, r in load_rows(Path(e2e["cfg"]["paths"]["data"]) / "swift" / "user_1" / "all.jsonl")[:3]]
        # swift's collator changes the rows it is given (as in training, each batch collated once): a copy each
        plain, padded = t.data_collator(copy.deepcopy(rows)), collate(t.data_collator, 64, copy.deepcopy(rows))
    finally:
        t.set_mode("transformers")
        t.model = None
    n, m = plain["input_ids"].shape[1], padded["input_ids"].shape[1]
    assert m % 64 == 0 and n < m < n + 64, (n, m)
    for key in ("input_ids", "labels", "attention_mask"):
        assert torch.equal(padded[key][:, :n], plain[key]), key
    assert (padded["labels"][:, n:] == -100).all() and (padded["attention_mask"][:, n:] == 0).all()
    assert torch.equal(padded["pixel_values"], plain["pixel_values"])
    with torch.no_grad():
        loss = lambda b: float(model(**{k: v for k, v in b.items() if torch.is_tensor(v)}).loss)  # noqa: E731
        assert loss(padded) == pytest.approx(loss(plain), rel=1e-5)


def test_gqa_decode_gives_the_same_answers_as_sdpa(e2e):
    """eval.run's GQA decode step (eval.gqa_decode, on by default) changes no answer of a batched run
    (compared on the answer tokens' log-probs, to 4 decimals)."""
    from transformers.modeling_utils import AttentionInterface

    from data_prep.patches import gqa_decode

    engine, reqs, cfg = eval_requests(e2e, 7, 12, gqa_decode=True)
    mapping, steps = AttentionInterface._global_mapping, []

    def answers():
        return [(r.choices[0].message.content, tuple(round(t["logprob"], 4) for t in r.choices[0].logprobs["content"]))
                for r in engine.infer(reqs, cfg, use_tqdm=False)]

    mapping["sdpa"] = lambda m, q, *a, **kw: steps.append(q.shape[2]) or gqa_decode._attention(m, q, *a, **kw)
    try:
        a = answers()
        assert steps.count(1) >= 3 * 11 * 2  # 3 batches x 11 decode steps x 2 LM layers went through it
        mapping["sdpa"] = gqa_decode._original
        b = answers()
    finally:
        mapping["sdpa"] = gqa_decode._attention
        gqa_decode.uninstall()  # transformers' own sdpa again, for the other tests
    assert len(a) == 7 and a == b and len({lp for _, lp in a}) >= 4


def test_eval_workers_give_the_answers_of_swifts_engine(e2e):
    """Batches encoded by eval.workers processes (eval/batches.py) answer exactly as swift's own
    TransformersEngine.infer and as in-process encoding, row for row (compared on the log-probs of
    the answer tokens: the untrained model's texts are alike, its log-probs are not)."""
    from eval import batches

    engine, reqs, cfg = eval_requests(e2e, 8, 3)

    def logprobs(resps):
        return [tuple(round(t["logprob"], 4) for t in r.choices[0].logprobs["content"]) for r in resps]

    def run(workers):
        out, here = [], []
        real = batches.EncodeCollate.__call__
        with pytest.MonkeyPatch.context() as mp:  # the batches encoded in this process (not the workers')
            mp.setattr(batches.EncodeCollate, "__call__", lambda self, q: here.append(len(q)) or real(self, q))
            for chunk, batch, tis in batches.encoded_batches(engine, reqs, 3, workers):
                out += batches.infer_encoded(engine, batch, tis, cfg)
        return logprobs(out), here

    swift = logprobs(engine.infer(reqs, cfg, use_tqdm=False))
    assert len(set(swift)) >= 4  # rows differ in their answer log-probs (a few share screen and intent)
    with_workers, here = run(2)
    assert here == [3]  # batch 0 here; batches 1 and 2 (3 + 2 rows) came from the worker processes
    assert with_workers == swift
    assert run(0) == (swift, [3, 3, 2])


def test_eval_prefetch_and_static_cache_give_the_answers_of_swifts_engine(e2e):
    """eval.prefetch: batches 1.. are encoded by the prefetching thread, in order, and answer exactly as
    swift's TransformersEngine.infer. The static-cache decode path of eval.cuda_graphs (on the CPU: its
    input buffers without the graph) keeps one set of buffers per batch (one graph per batch on a GPU)
    and the answers (log-probs within 1e-4: a longer, masked cache sums in another order)."""
    import threading

    from eval import batches

    engine, reqs, cfg = eval_requests(e2e, 8, 4)

    def logprobs(resps):
        return [[t["logprob"] for t in r.choices[0].logprobs["content"]] for r in resps]

    swift = logprobs(engine.infer(reqs, cfg, use_tqdm=False))
    real, where = batches.EncodeCollate.__call__, []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batches.EncodeCollate, "__call__",
                   lambda self, q: where.append((threading.current_thread().name[:13], len(q))) or real(self, q))
        out = []
        for chunk, batch, tis in batches.encoded_batches(engine, reqs, 3, prefetch=2):
            out += [(chunk, batches.infer_encoded(engine, batch, tis, cfg))]
    assert where == [("MainThread", 3), ("eval-prefetch", 3), ("eval-prefetch", 2)]
    assert [c for c, _ in out] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert logprobs([r for _, rs in out for r in rs]) == swift
    steps, static = {}, []
    for chunk, batch, tis in batches.encoded_batches(engine, reqs, 3):
        static += batches.infer_encoded(engine, batch, tis, cfg, graphs=True, stats=steps)
    assert steps == {"new_inputs": 3, "eager": 3 * 3, "captures": 0, "replays": 0}  # 3 batches x 3 decode steps
    assert len(set(map(tuple, swift))) >= 4  # rows differ in their answer log-probs
    assert [len(x) for x in logprobs(static)] == [len(x) for x in swift] == [4] * 8
    assert max(abs(a - b) for x, y in zip(logprobs(static), swift) for a, b in zip(x, y)) < 1e-4


def _answers(e2e, tmp_path, name, n=10, **kw):
    """eval.run.generate on user 1's first n rows; {id: raw answer} and generate's stats."""
    from eval.generation import generate
    from eval.job import load_rows

    rows = load_rows(Path(e2e["cfg"]["paths"]["data"]) / "swift" / "user_1" / "all.jsonl")[:n]
    pred = tmp_path / name / "predictions.jsonl"
    pred.parent.mkdir(parents=True)
    st = generate(kw.pop("engine"), rows, pred, kw.pop("batch_size", 4), kw.pop("max_new_tokens", 20), {},
                  progress=False, **kw)
    lines = [json.loads(x) for x in pred.read_text().splitlines()]
    assert len(lines) == len({r["id"] for r in lines}) == len(rows)  # each row written once
    return {r["id"]: r["raw"] for r in lines}, st


def test_reserved_answer_tokens_then_long_rows_give_the_same_answers(e2e, tmp_path):
    """eval.reserve_new_tokens: a batch answers up to the reserve on a static cache; rows still going
    there are answered again (dynamic cache) up to max_new_tokens: the answers of one plain pass.
    The random tiny model never stops, so every row goes past the reserve."""
    engine, _, _ = eval_requests(e2e, 1, 1)
    plain, st0 = _answers(e2e, tmp_path, "plain", engine=engine)
    two, st = _answers(e2e, tmp_path, "reserve", engine=engine, graphs=True, reserve_new_tokens=6,
                       long_batch_size=3)
    assert st0["long_rows"] == 0 and st["long_rows"] == 10
    assert st["decode_steps"]["new_inputs"] == 3  # the static cache held 6 answer tokens, 3 batches
    assert two == plain
    assert {len(engine.tokenizer.encode(t)) for t in plain.values()} <= {19, 20, 21}  # all ran to the limit


def test_cuda_out_of_memory_halves_the_batch_and_redoes_it(e2e, tmp_path, monkeypatch, capsys):
    """A batch hit by a CUDA OOM error is redone at half the size, until it fits; nothing is lost or
    written twice, and the answers are those of a run at the size that fits. (The OOM is raised on
    batches above 2 rows: the CPU has no CUDA allocator to run out of.)"""
    import torch

    from eval import batches

    engine, _, _ = eval_requests(e2e, 1, 1)
    small, _ = _answers(e2e, tmp_path, "small", engine=engine, batch_size=2, max_new_tokens=8)
    real, seen = batches.infer_encoded, []

    def tight(engine, batch, *a, **kw):
        rows = batch["input_ids"].shape[0]
        seen.append(rows)
        if rows > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test)")
        return real(engine, batch, *a, **kw)

    monkeypatch.setattr(batches, "infer_encoded", tight)
    got, st = _answers(e2e, tmp_path, "oom", engine=engine, batch_size=8, max_new_tokens=8)
    assert st["batch_sizes"] == [8, 4, 2] and seen == [8, 4, 2, 2, 2, 2, 2]
    assert got == small
    assert "batch size now 2, redoing the batch from row 0" in capsys.readouterr().err


def _wait_for(cond, proc, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.5)
    return False


def test_eval_kill_and_resume_scores_each_sample_once(e2e, tmp_path):
    data = Path(e2e["cfg"]["paths"]["data"]) / "swift" / "user_1" / "all.jsonl"
    out = tmp_path / "ev"
    cmd = ["python3", "-m", "eval.run", "--config", e2e["path"], *e2e["ov"], "--model", str(e2e["model"]),
           "--data", str(data), "--out", str(out), "--batch-size", "2", "--set", "eval.workers=2",
           "--set", "eval.prefetch=0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    pred = out / "predictions.jsonl"
    got = _wait_for(lambda: pred.exists() and len(pred.read_text().splitlines()) >= 2, proc, 300)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert got, "eval never wrote a prediction"
    with open(pred, "a") as f:
        f.write('{"id": "torn')  # a line cut by the kill
    first = len([x for x in pred.read_text().splitlines() if x.endswith("}")])
    run_cli(*cmd[1:])
    ids = [json.loads(x)["id"] for x in pred.read_text().splitlines()]
    want = data.with_suffix(".ids").read_text().splitlines()
    assert sorted(ids) == sorted(want) and len(ids) == len(set(ids)) and first < len(want)
    recs = json.loads((out / "out.json").read_text())
    assert [r["id"] for r in recs] == want
    assert (out / "results.txt").read_text().count("PIGG-compatible") == 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == len(want) and m["parse_failures"] + len([r for r in recs if r["pred"]]) == len(want)
    # once every row is answered, a re-run loads nothing (a resumed protocol's finished eval stages cost no torch,
    # transformers and swift start-up) and scores the same
    again = ("import runpy, sys; sys.argv = ['eval.run'] + sys.argv[1:]\ntry:\n runpy.run_module('eval.run', "
             "run_name='__main__', alter_sys=True)\nexcept SystemExit as e:\n assert not e.code, e.code\n"
             "print('torch loaded:', 'torch' in sys.modules)")
    p = run_cli("-c", again, *cmd[3:])
    assert "torch loaded: False" in p.stdout and json.loads((out / "metrics.json").read_text()) == m


@TRAINED
def test_person_kfold_kill_and_resume(e2e):
    """Kill 4_finetune_person.sh while fold 1 trains (fold 0 DONE); the re-run finishes it, fold 0 untouched. Two of
    the K=3 folds (the user's summary waits for all three: not written; summaries themselves: test_demo.py)."""
    cfg = e2e["cfg"]
    run_cli("-m", "swift_configs.train", "--config", e2e["path"], *e2e["ov"], "--full")  # the base (no-op if done)
    base = run_dir(cfg, "person_lora", "user_2")
    launcher = ["bash", "scripts/4_finetune_person.sh", "cpu", "--lora", "--users", "2", "--fold", "0", "1",
                "--config", e2e["path"], *e2e["ov"]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(launcher, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ok = _wait_for(lambda: (base / "fold_0" / "DONE").exists() and any(
        (c / "trainer_state.json").exists() for c in (base / "fold_1").glob("checkpoint-*")), proc, 600)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ok, "never reached: fold 0 DONE and fold 1 training"
    assert not (base / "fold_1" / "DONE").exists()
    fold0_log = (base / "fold_0" / "train.log").read_text()
    p = subprocess.run(launcher, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "1 folds already done" in p.stdout
    assert (base / "fold_0" / "train.log").read_text() == fold0_log  # fold 0 not retrained
    man = json.loads((base / "fold_1" / "manifest.json").read_text())
    assert man["resumed_from"] and "checkpoint-" in man["resumed_from"]
    for f in range(2):
        ids = [json.loads(x)["id"] for x in (base / f"fold_{f}" / "eval" / "predictions.jsonl").read_text().splitlines()]
        want = (Path(cfg["paths"]["data"]) / "swift" / "user_2" / f"fold_{f}" / "test.ids").read_text().splitlines()
        assert sorted(ids) == sorted(want) and len(ids) == len(set(ids))
        assert (base / f"fold_{f}" / "eval" / "out.json").exists() and (base / f"fold_{f}" / "eval" / "results.txt").exists()
    assert not (base / "fold_2").exists() and not (run_dir(cfg, "person_lora") / "user_2_summary.json").exists()
    # the adapter of a fold loads in swift's inference engine on top of the global checkpoint
    done = yaml.safe_load((base / "fold_0" / "DONE").read_text())
    assert (Path(done["checkpoint"]) / "adapter_config.json").exists()


@TRAINED
def test_forked_run_trains_as_a_fresh_process(e2e, tmp_path):
    """train.keep_loaded (shipped): a sweep's runs are forked from one process that imported torch, transformers and
    swift (swift_configs/train_serve.py). The same fold trained by a fresh `swift sft` process (keep_loaded false)
    logs the same losses step by step, and scores the same hold-out metrics. The fresh one also has 2 loader workers
    (not kept between epochs: like the in-process loader, a new iterator each epoch) with train.epoch_prefetch
    (shipped; data_prep/patches/epoch_prefetch.py): epoch 2's batches encoded during epoch 1, and still the same losses (same
    batches, same order, the same CPU random stream for the LoRA dropout; kept workers draw their seed once a run,
    which moves CPU dropout: tests/test_epoch_prefetch.py compares those with and without the stream)."""
    cfg = e2e["cfg"]
    from swift_configs.train import FORKED

    fold = run_dir(cfg, "person_lora", "user_2", "fold_0")
    if not (fold / "DONE").exists():  # run alone: train and evaluate that fold first
        run_cli("-m", "swift_configs.train", "--config", e2e["path"], *e2e["ov"], "--full")
        run_cli("-m", "swift_configs.person", "--config", e2e["path"], *e2e["ov"], "--users", "2", "--fold", "0")
    assert FORKED in (fold / "train.log").read_text()
    base = yaml.safe_load((run_dir(cfg, "global_full") / "DONE").read_text())["checkpoint"]
    run_cli("-m", "swift_configs.person", "--config", e2e["path"], *e2e["ov"], "--users", "2", "--fold", "0",
            "--set", f"paths.runs={tmp_path}", "--set", f"train.person_base={base}", "--set", "train.keep_loaded=false",
            "--set", "train.person_overrides.dataloader_num_workers=2",
            "--set", "train.person_overrides.dataloader_persistent_workers=false")
    fresh = run_dir(load_experiment(e2e["path"], [f"paths.runs={tmp_path}"]), "person_lora", "user_2", "fold_0")
    log = (fresh / "train.log").read_text()
    assert FORKED not in log and f"{epoch_prefetch.LOG} 2 were encoded during" in log
    losses = lambda d: [(r["global_step/max_steps"], r["loss"]) for r in map(json.loads, (d / "logging.jsonl").read_text().splitlines()) if "loss" in r]  # noqa: E731,E501
    assert losses(fold) and losses(fold) == losses(fresh)
    metrics = lambda d: json.loads((d / "eval" / "metrics.json").read_text())["pigg"]  # noqa: E731
    assert metrics(fold) == metrics(fresh)


@TRAINED
def test_merged_personal_model_answers_as_its_adapter(e2e, tmp_path):
    """scripts/7_export.sh merges a fold's LoRA into its base (swift export --merge_lora): the merged folder,
    evaluated alone, gives the answers the adapter gave on the fold's hold-out; a re-run keeps it."""
    cfg = e2e["cfg"]
    fold = run_dir(cfg, "person_lora", "user_2", "fold_0")
    if not (fold / "DONE").exists():  # run alone: train and evaluate that fold first
        run_cli("-m", "swift_configs.train", "--config", e2e["path"], *e2e["ov"], "--full")
        run_cli("-m", "swift_configs.person", "--config", e2e["path"], *e2e["ov"], "--users", "2", "--fold", "0")
    p = subprocess.run(["bash", "scripts/7_export.sh", "cpu", "--user", "2", "--fold", "0", "--config", e2e["path"],
                        *e2e["ov"]], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    merged = fold / "merged"
    assert (merged / "config.json").exists() and not list(merged.glob("adapter_*"))
    assert yaml.safe_load((merged / "MERGED").read_text())["adapter"] == yaml.safe_load((fold / "DONE").read_text())["checkpoint"]
    test = Path(cfg["paths"]["data"]) / "swift" / "user_2" / "fold_0" / "test.jsonl"
    run_cli("-m", "eval.run", "--config", e2e["path"], *e2e["ov"], "--model", str(merged), "--data", str(test),
            "--out", str(tmp_path / "merged_eval"))
    answers = lambda f: {json.loads(x)["id"]: json.loads(x)["raw"] for x in f.read_text().splitlines()}  # noqa: E731
    assert answers(tmp_path / "merged_eval" / "predictions.jsonl") == answers(fold / "eval" / "predictions.jsonl")
    p = run_cli("-m", "swift_configs.export", "--config", e2e["path"], *e2e["ov"], "--user", "2", "--fold", "0")
    assert "already merged" in p.stdout


def test_eval_shards_over_devices_and_merges_in_row_order(e2e, tmp_path):
    """Two worker processes (cpu,cpu stands in for 0,1): each takes every other row; out.json in row order."""
    data = Path(e2e["cfg"]["paths"]["data"]) / "swift" / "user_2" / "fold_0" / "test.jsonl"
    out = tmp_path / "sharded"
    run_cli("-m", "eval.run", "--config", e2e["path"], *e2e["ov"], "--model", str(e2e["model"]), "--data", str(data),
            "--out", str(out), "--devices", "cpu,cpu", "--batch-size", "4")
    want = data.with_suffix(".ids").read_text().splitlines()
    shards = [[json.loads(x)["id"] for x in (out / f"predictions.shard{i}.jsonl").read_text().splitlines()]
              for i in (0, 1)]
    assert sorted(shards[0]) == sorted(want[0::2]) and sorted(shards[1]) == sorted(want[1::2])
    assert [r["id"] for r in json.loads((out / "out.json").read_text())] == want


def test_eval_server_says_a_failed_job_and_serves_the_next(e2e, tmp_path):
    """A sweep worker's kept eval process (eval/serve.py): a job that fails comes back as an error naming the cause
    and the log, that process ends; the next job starts a fresh one, and the job after it reuses its engine."""
    from swift_configs.sweep import EvalServer
    from swift_configs.train import TrainError

    srv, log = EvalServer(e2e["cfg"], "cpu", {"OMP_NUM_THREADS": "1"}), tmp_path / "eval.log"
    try:
        with pytest.raises(TrainError, match="no such eval file"):
            srv.evaluate(e2e["model"], [], [(tmp_path / "missing.jsonl", tmp_path / "o1")], log, "a bad job")
        assert not srv.srv.alive() and "no such eval file" in log.read_text()
        data = Path(e2e["cfg"]["paths"]["data"]) / "swift" / "user_2" / "fold_0" / "test.jsonl"
        first = srv.evaluate(e2e["model"], [], [(data, tmp_path / "o2")], log, "job 2")
        second = srv.evaluate(e2e["model"], [], [(data, tmp_path / "o3")], log, "job 3")
    finally:
        srv.close()
    assert first["ok"] and first["engine"] == "built" and second["engine"] == "kept"
    m2, m3 = (json.loads((tmp_path / o / "metrics.json").read_text()) for o in ("o2", "o3"))
    assert m2 == m3 and m2["n"] == len(data.with_suffix(".ids").read_text().splitlines())
