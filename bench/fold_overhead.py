"""Fixed cost per personalized fold: where a fold's wall time goes outside training steps and answering, with
the sweep's training and eval processes kept between folds (``kept``: ``train.keep_loaded`` and ``eval.keep_loaded``
true, shipped), only the eval one kept (``kept_eval``), or neither (``fresh``: a fresh process per fold for each).

Usage: python bench/fold_overhead.py --device cuda --shape 8b [--folds 3] [--variants kept fresh] [--tag h200]
       python bench/fold_overhead.py --device cpu --shape tiny --folds 2      (CPU smoke run)

Runs `python -m swift_configs.person` (what scripts/4_finetune_person.sh runs: person_lora as shipped, 3 epochs,
the experiment's eval settings) on one test user with a handful of samples, once per variant, with the bench
plugin bench/plugins/phase_clock.py in each `swift sft`. Per fold: wall (train + eval, the sweep's DONE marker),
the `swift sft` process split into start-up (interpreters, imports, arguments), build (model load, dataset,
trainer), training loop, and after (save, swift's plots, exit); the eval split into model/engine time (build,
or adapter swap on the kept base), answering, and the rest (start-up, scoring, parking). Fixed cost = wall -
training loop - answering. The model folder can be kept between calls (``--model-dir``: built once).
Writes bench/results/fold_overhead_<device>[_tag].json and a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_common.py
from data_prep.io import read_json, write_json  # noqa: E402
from data_prep.rundir import done, eval_dir, fold_dir, read_marker, run_dir, trained  # noqa: E402
from _common import ROOT, child_env, first_gpu, prepare_experiment, scratch, random_model  # noqa: E402

CLOCK = ROOT / "bench" / "plugins" / "phase_clock.py"


def log(msg: str) -> None:
    print(f"[fold_overhead {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fold_record(cfg: dict, stage: str, user: int, fold: int) -> dict:
    f = fold_dir(run_dir(cfg, stage), user, fold)
    d, tr = read_marker(done(f)), read_marker(trained(f))
    clock = read_json(f / "phase_clock.json") if (f / "phase_clock.json").exists() else {}
    st = read_json(eval_dir(f) / "eval_stats.json")
    start, end = tr["started"], tr["started"] + tr["seconds"]
    rec = {"fold": fold, "wall_s": d["train_s"] + d["eval_s"], "train_s": d["train_s"], "eval_s": d["eval_s"],
           "sft_process_s": tr["seconds"], "eval_load_s": st.get("load_s"), "eval_answer_s": st.get("seconds"),
           "eval_engine": st.get("engine"), "eval_samples": st.get("samples")}
    main_end = swift_main_end(f / "train.log")
    if main_end:
        clock["main_end"] = main_end
    if {"imported", "trainer_built", "train_begin", "train_end"} <= clock.keys():
        rec.update(sft_startup_s=clock["imported"] - start, sft_build_s=clock["trainer_built"] - clock["imported"],
                   sft_setup_s=clock["train_begin"] - clock["trainer_built"],
                   sft_loop_s=clock["train_end"] - clock["train_begin"],
                   sft_first_step_s=clock.get("first_step_end", clock["train_end"]) - clock["train_begin"],
                   sft_after_s=end - clock["train_end"])
        if "main_end" in clock and "exit" in clock:  # the after part: swift's own end, exit handlers, teardown
            rec.update(sft_after_main_s=clock["main_end"] - clock["train_end"],
                       sft_after_atexit_s=clock["exit"] - clock["main_end"], sft_after_teardown_s=end - clock["exit"])
    stopped = re.findall(r"stopped (\d+) child processes", (f / "train.log").read_text(encoding="utf-8", errors="replace"))
    rec["children_stopped_at_end"] = int(stopped[-1]) if stopped else 0
    rec["eval_rest_s"] = rec["eval_s"] - (rec["eval_load_s"] or 0) - (rec["eval_answer_s"] or 0)
    rec["fixed_s"] = rec["wall_s"] - rec.get("sft_loop_s", 0) - (rec["eval_answer_s"] or 0)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in rec.items()}


def swift_main_end(log: Path) -> float | None:
    """When swift's pipeline returned: its own log line 'End time of running main: <local time>' (last one)."""
    from datetime import datetime

    hits = re.findall(r"End time of running main: (\S+ \S+)", log.read_text(encoding="utf-8", errors="replace"))
    return datetime.strptime(hits[-1], "%Y-%m-%d %H:%M:%S.%f").timestamp() if hits else None


VARIANTS = {"kept": (True, True), "kept_eval": (False, True), "fresh": (False, False)}  # (train, eval) kept


def run_variant(cfg_path: Path, cfg: dict, name: str, device: str, folds: int) -> dict:
    keep_train, keep_eval = VARIANTS[name]
    cmd = [sys.executable, "-m", "swift_configs.person", "--config", str(cfg_path), "--set", f"name={name}",
           "--set", f"eval.keep_loaded={str(keep_eval).lower()}",
           "--set", f"train.keep_loaded={str(keep_train).lower()}", "--users", "1",
           "--fold", *[str(f) for f in range(folds)], "--lora", "--gpus", "0" if device == "cuda" else "cpu"]
    t = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    res = {"train_keep_loaded": keep_train, "eval_keep_loaded": keep_eval, "rc": p.returncode,
           "sweep_wall_s": round(time.time() - t, 1), "output": p.stdout[-1500:] + p.stderr[-1500:]}
    if p.returncode:
        return res
    c = {**cfg, "name": name}
    res["folds"] = [fold_record(c, "person_lora", 1, f) for f in range(folds)]
    return res


def table(res: dict) -> str:
    cols = ["wall_s", "fixed_s", "sft_startup_s", "sft_build_s", "sft_setup_s", "sft_loop_s", "sft_after_s",
            "sft_after_teardown_s",
            "eval_load_s", "eval_answer_s", "eval_rest_s"]
    rows = ["| variant | fold | " + " | ".join(c[:-2] + " (s)" for c in cols) + " | eval engine |",
            "|" + "---|" * (len(cols) + 3)]
    for name, r in res["variants"].items():
        for f in r.get("folds", []):
            rows.append(f"| {name} | {f['fold']} | " + " | ".join(f"{f.get(c, float('nan')):.1f}" for c in cols)
                        + f" | {f['eval_engine']} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--shape", choices=["tiny", "8b"], default="tiny")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--fresh-folds", type=int, default=None, help="folds of the other variants (default --folds)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--episodes", type=int, default=8, help="the test user's episodes (a handful of clicks)")
    p.add_argument("--answer-tokens", type=int, default=24, help="eval.max_new_tokens (a random model never stops)")
    p.add_argument("--cpu-workers", type=int, default=0, help="dataloader_num_workers on the CPU (GPU: as shipped)")
    p.add_argument("--model-dir", default=None, help="build the model here once and reuse it (default: scratch)")
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = p.parse_args(argv)
    from data_prep.synth import synth

    out = Path(a.out) / f"fold_overhead_{a.device}{a.tag and '_' + a.tag}.json"
    gpu, card = first_gpu() if a.device == "cuda" else ("cpu", None)
    res = {"device": a.device, "gpu": gpu, "card_gib": card, "shape": a.shape, "commit": os.environ.get("PIGG_COMMIT"),
           "variants": {}}
    with scratch("pigg_fold_") as tmp:
        model = Path(a.model_dir) if a.model_dir else tmp / "model"
        t0 = time.time()
        if not (model / "config.json").exists():
            random_model(model, a.shape, a.device)
        synth(tmp / "raw", users=3, episodes=12, seed=0, scale=0.25 if a.shape == "tiny" else 1.0, defects=False,
              test_users=1, test_episodes=a.episodes)
        cfg_path, cfg = prepare_experiment(tmp, model, "fold", {
            "users": {"test": "1", "global": "2-3"}, "image_max_token_num": 32 if a.shape == "tiny" else 980,
            # a random model never stops: answers cut at a real answer's length (~24 tokens), not 512
            "eval": {"max_new_tokens": a.answer_tokens},
            "train": {"person_base": str(model), "person_overrides": {
                "callbacks": ["pigg_phase_clock"], "external_plugins": [str(CLOCK)],
                **({} if a.device == "cuda" else {"dataloader_num_workers": a.cpu_workers})}}})
        n = len((Path(cfg["paths"]["data"]) / "swift" / "user_1" / "fold_0" / "train.ids").read_text().splitlines())
        res["train_samples_fold0"] = n
        log(f"data and model ready ({time.time() - t0:.0f}s); fold 0 trains on {n} samples")
        for name in a.variants:
            log(f"{name}: {a.folds} folds ...")
            r = res["variants"][name] = run_variant(cfg_path, cfg, name, a.device,
                                                    a.folds if name == "kept" else a.fresh_folds or a.folds)
            log(f"{name}: rc {r['rc']}, {r['sweep_wall_s']} s" + ("" if r["rc"] else "; per fold " + ", ".join(
                f"{f['wall_s']:.0f} s (fixed {f['fixed_s']:.0f})" for f in r["folds"])))
            if r["rc"]:
                print(r["output"])
            write_json(out, res)
    for name, r in res["variants"].items():
        later = [f["wall_s"] for f in r.get("folds", [])[1:]]
        r["median_later_fold_wall_s"] = statistics.median(later) if later else None
        r["median_later_fold_fixed_s"] = statistics.median([f["fixed_s"] for f in r["folds"][1:]]) if later else None
    print(table(res))
    write_json(out, res)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
