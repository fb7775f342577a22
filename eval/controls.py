"""The controls a reviewer asks for: is the gain about this user, how many clicks does personalization need, can
the user's history do it without training.

Usage: python -m eval.controls --config EXP --devices D [--cross-user] [--in-context] [--data-curve]
                               [--model PATH] [--fresh]     (none of the three flags: all three)

- ``--cross-user``: every test user's fold adapter (the personalized stage's, train.person_template) answers every
  other test user's hold-out of the same fold (different users: no leakage). Own-adapter accuracy well above
  others'-adapter accuracy is what makes the gain personal. Writes runs/<exp>/controls/cross_user/{fold_F/adapter_U/
  user_V/eval/, overall.json, cross_user.png}: own_accuracy and others_accuracy (per user v: own = v's adapter on v's
  hold-out, others = the mean over the other users' adapters on it; then the mean over users; PIGG-compatible
  acc@delta), the same for median L2, per-user rows, the user x user matrix (means over folds), and the paired
  bootstrap interval of own - others over users. The own cells are the personalized stage's own evaluations.
- ``--in-context``: the global checkpoint (train.person_base; ``--model`` for any other) answers each hold-out sample
  with ``controls.in_context_k`` of the same user's fold-training clicks before it (data_prep/controls.py: picked by
  instruction similarity; variants ``image`` and ``text``), no training. A method like the others:
  runs/<exp>/in_context_<variant>/{user_U/fold_F/eval/, user_U_summary.json, overall.json} (person_lora's keys,
  plus tokens and images per sample); the report puts it beside Global and Global+Personalized.
- ``--data-curve``: the curve trained by ``python -m swift_configs.data_curve`` summarised:
  runs/<exp>/controls/data_curve/{overall.json, data_curve.png}: points [{n, accuracy, median_l2, users, lo, hi}]
  (accuracy's 95 % bootstrap interval over users), the personalized stage as the last point (``n``: null, all).

Every evaluation resumes from its predictions and records its provenance (eval/job.py); the base model loads once
and each adapter is swapped on it (eval/engine.py ``Engines``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from data_prep.config import load_experiment
from data_prep.controls import write_in_context
from data_prep.errors import HarnessError
from data_prep.export import check_export, swift_paths
from data_prep.io import read_json, read_jsonl, write_json
from data_prep.rundir import (cross_eval_dir, cross_user_dir, curve_dir, curve_sizes_found, curve_stage_dir, done,
                              eval_dir, fold_dir, in_context_stage, marker_checkpoint, overall_file, person_base,
                              resolve_checkpoint, run_dir, user_summary)
from data_prep.runtime.cli import parser, run
from data_prep.summary import overall, summarize_folds

from .engine import Engines
from .job import evaluate
from .stats import paired_bootstrap


class ControlsError(HarnessError):
    pass


def devices_of(text: str) -> list[str]:
    devs = [d for d in str(text).split(",") if d]
    if len(devs) != 1:
        raise ControlsError(f"--devices {text}: the controls run on one device (cpu or one GPU id)")
    return devs


def person_adapters(cfg: dict) -> dict[tuple[int, int], tuple[str, str]]:
    """{(user, fold): (base model, adapter)} of the personalized stage's finished folds."""
    stage, out = run_dir(cfg, cfg["train"]["person_template"]), {}
    for u in cfg["users"]["test"]:
        for f in range(cfg["folds"]["k"]):
            d = fold_dir(stage, u, f)
            if done(d).exists():
                ckpt = marker_checkpoint(done(d))
                args = ckpt / "args.json"  # swift's record of the run: the base the adapter was trained on
                if not args.exists():
                    raise ControlsError(f"{ckpt}: no args.json naming the adapter's base model")
                out[(u, f)] = (read_json(args)["model"], str(ckpt))
    return out


def cross_user(cfg: dict, devices: list[str], fresh: bool = False) -> dict:
    users, k = cfg["users"]["test"], cfg["folds"]["k"]
    if len(users) < 2:
        raise ControlsError("the cross-user control needs at least 2 test users")
    adapters = person_adapters(cfg)
    missing = [(u, f) for u in users for f in range(k) if (u, f) not in adapters]
    if missing:
        raise ControlsError(f"the personalized stage is not finished for (user, fold) {missing}: run "
                            "scripts/4_finetune_person.sh first")
    check_export(cfg)
    engines, delta = Engines(), cfg["eval"]["delta"]
    cells: dict[tuple[int, int], list[dict]] = {}  # (adapter user, hold-out user) -> metrics per fold
    for f in range(k):
        for u in users:
            base, adapter = adapters[(u, f)]
            jobs = [(swift_paths(cfg, v, f)["test"], cross_eval_dir(cfg, f, u, v)) for v in users if v != u]
            for (v, m) in zip([v for v in users if v != u],
                              evaluate(cfg, base, [adapter], jobs, devices, engines=engines, fresh=fresh, quiet=True)):
                cells.setdefault((u, v), []).append(m)
            own = read_json(eval_dir(fold_dir(run_dir(cfg, cfg["train"]["person_template"]), u, f)) / "metrics.json")
            cells.setdefault((u, u), []).append(own)
    acc = {c: float(np.mean([m["pigg"]["accuracy"] for m in ms])) for c, ms in cells.items()}
    med = {c: float(np.mean([m["pigg"]["median_l2"] for m in ms])) for c, ms in cells.items()}
    rows = [{"user": v, "own_accuracy": acc[(v, v)],
             "others_accuracy": float(np.mean([acc[(u, v)] for u in users if u != v])),
             "own_median_l2": med[(v, v)], "others_median_l2": float(np.mean([med[(u, v)] for u in users if u != v]))}
            for v in users]
    ci = paired_bootstrap([r["others_accuracy"] for r in rows], [r["own_accuracy"] for r in rows])
    out = {"delta": delta, "folds": k, "users": users,
           "own_accuracy": float(np.mean([r["own_accuracy"] for r in rows])),
           "others_accuracy": float(np.mean([r["others_accuracy"] for r in rows])),
           "own_median_l2": float(np.mean([r["own_median_l2"] for r in rows])),
           "others_median_l2": float(np.mean([r["others_median_l2"] for r in rows])),
           "own_minus_others": ci, "per_user": rows,
           "matrix": {"rows": "adapter user", "columns": "hold-out user",
                      "accuracy": [[acc[(u, v)] for v in users] for u in users],
                      "median_l2": [[med[(u, v)] for v in users] for u in users]}}
    write_json(overall_file(cross_user_dir(cfg)), out)
    heatmap(out, Path(cross_user_dir(cfg)) / "cross_user.png")
    return out


def heatmap(o: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, users = 100 * np.array(o["matrix"]["accuracy"]), o["users"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(users), 1.0 + 0.8 * len(users)))
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=max(1.0, m.max()))
    for i in range(len(users)):
        for j in range(len(users)):
            ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", color="w" if m[i, j] < m.max() / 2 else "k")
    ax.set_xticks(range(len(users)), [str(u) for u in users])
    ax.set_yticks(range(len(users)), [str(u) for u in users])
    ax.set_xlabel("hold-out of user")
    ax.set_ylabel("adapter of user")
    ax.set_title(f"acc@{o['delta']:g} (%), mean over folds", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    plt.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.savefig(path, dpi=120)
    plt.close()
    return path


def in_context(cfg: dict, devices: list[str], model: str | None = None, fresh: bool = False) -> dict:
    """Every variant of ``controls.in_context_variants``: {variant: overall}."""
    model = str(resolve_checkpoint(Path(model))) if model else str(global_checkpoint(cfg))
    k, engines, results = cfg["controls"]["in_context_k"], Engines(), {}
    for variant in cfg["controls"]["in_context_variants"]:
        files = write_in_context(cfg, variant, k)
        stage = run_dir(cfg, in_context_stage(variant))
        jobs = [(files[u][f], eval_dir(fold_dir(stage, u, f))) for u in sorted(files) for f in sorted(files[u])]
        evaluate(cfg, model, [], jobs, devices, engines=engines, fresh=fresh, quiet=True)
        sums = []
        for u in sorted(files):
            folds = [read_json(eval_dir(fold_dir(stage, u, f)) / "metrics.json") for f in sorted(files[u])]
            s = summarize_folds(folds, u)
            write_json(user_summary(stage, u), s)
            sums.append(s)
        stats = [read_json(o / "eval_stats.json") for _, o in jobs if (o / "eval_stats.json").exists()]
        images = [len(row["images"]) for data, _ in jobs for row in read_jsonl(data)]  # a fold short of k: fewer
        o = {**overall(sums), "model": model, "variant": variant, "k": k,
             "images_per_sample": round(float(np.mean(images)), 2), "prompt_tokens_per_sample": tokens_per_sample(stats),
             "samples": len(images)}
        write_json(overall_file(stage), o)
        results[variant] = o
    return results


def tokens_per_sample(stats: list[dict]) -> float | None:
    tokens, samples = sum(s.get("prompt_tokens", 0) for s in stats), sum(s.get("samples", 0) for s in stats)
    return round(tokens / samples, 1) if samples and tokens else None


def global_checkpoint(cfg: dict) -> Path:
    ckpt = person_base(cfg)
    if ckpt is None or not ckpt.exists():
        raise ControlsError(f"train.person_base: {cfg['train']['person_base']} is not a finished run or a checkpoint: "
                            "run scripts/2_finetune_global.sh first, or pass --model")
    return ckpt


def data_curve(cfg: dict) -> dict:
    sizes = curve_sizes_found(cfg)
    if not sizes:
        raise ControlsError(f"{curve_dir(cfg)}: no curve runs: run `python -m swift_configs.data_curve` first")
    stages = [(n, curve_stage_dir(cfg, n)) for n in sizes] + [(None, run_dir(cfg, cfg["train"]["person_template"]))]
    points = []
    for n, stage in stages:
        if not overall_file(stage).exists():
            continue
        sums = [read_json(user_summary(stage, u)) for u in cfg["users"]["test"]]
        accs = [s["avg_accuracy"] for s in sums]
        ci = paired_bootstrap([0.0] * len(accs), accs)
        points.append({"n": n, "accuracy": float(np.mean(accs)), "median_l2": float(np.mean(
            [s["avg_median_l2"] for s in sums])), "users": len(sums), "lo": ci["lo"], "hi": ci["hi"],
            "per_user": {str(s["user_id"]): s["avg_accuracy"] for s in sums}})
    out = {"points": points, "note": "n null: all of a fold's training samples (the personalized stage)",
           "delta": cfg["eval"]["delta"]}
    write_json(overall_file(curve_dir(cfg)), out)
    curve_plot(out, Path(curve_dir(cfg)) / "data_curve.png")
    return out


def curve_plot(o: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = o["points"]
    labels = [str(p["n"]) if p["n"] is not None else "all" for p in pts]
    y = [100 * p["accuracy"] for p in pts]
    err = [[100 * (p["accuracy"] - p["lo"]) for p in pts], [100 * (p["hi"] - p["accuracy"]) for p in pts]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(range(len(pts)), y, yerr=err, fmt="o-", capsize=3)
    ax.set_xticks(range(len(pts)), labels)
    ax.set_xlabel("training samples of the user per fold")
    ax.set_ylabel(f"acc@{o['delta']:g} (%)")
    ax.set_title("Data efficiency of personalization (95 % interval over users)", fontsize=10)
    plt.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.savefig(path, dpi=120)
    plt.close()
    return path


def main(argv=None) -> int:
    p = parser("python -m eval.controls", __doc__)
    p.add_argument("--devices", default="cpu", help="cpu or one GPU id")
    p.add_argument("--cross-user", action="store_true")
    p.add_argument("--in-context", action="store_true")
    p.add_argument("--data-curve", action="store_true", help="summarise the curve trained by swift_configs.data_curve")
    p.add_argument("--model", help="in-context: the model answering (default: the global checkpoint)")
    p.add_argument("--fresh", action="store_true", help="drop earlier answers of these controls and answer again")
    p.add_argument("--dry-run", action="store_true", help="say what would be evaluated; load nothing")
    a = p.parse_args(argv)
    return run(lambda: controls(a))


def controls(a) -> None:
    cfg = load_experiment(a.config, a.overrides)
    every = not (a.cross_user or a.in_context or a.data_curve)
    if a.dry_run:
        check_export(cfg)
        if a.cross_user or every:
            stage = run_dir(cfg, cfg["train"]["person_template"])
            found = [1 for u in cfg["users"]["test"] for f in range(cfg["folds"]["k"]) if done(fold_dir(stage, u, f)).exists()]
            print(f"[controls] cross-user: {len(found)} finished personalized folds, each adapter on the other "
                  f"{len(cfg['users']['test']) - 1} users' hold-outs of its fold -> {cross_user_dir(cfg)}")
        if a.in_context or every:
            print(f"[controls] in-context: {a.model or run_dir(cfg, cfg['train']['person_base'])} with "
                  f"k={cfg['controls']['in_context_k']}, variants {cfg['controls']['in_context_variants']}")
        if a.data_curve or every:
            print(f"[controls] data curve: n {cfg['controls']['data_curve_n']} + all -> {curve_dir(cfg)}")
        return
    if a.cross_user or every:
        o = cross_user(cfg, devices_of(a.devices), a.fresh)
        ci = o["own_minus_others"]
        print(f"[controls] cross-user: own adapter acc {o['own_accuracy']:.4f}, others' {o['others_accuracy']:.4f} "
              f"(own - others {ci['diff']:+.4f}, 95 % {ci['lo']:+.4f} to {ci['hi']:+.4f}) -> "
              f"{overall_file(cross_user_dir(cfg))}", flush=True)
    if a.in_context or every:
        for variant, o in in_context(cfg, devices_of(a.devices), a.model, a.fresh).items():
            print(f"[controls] in-context {variant} (k {o['k']}): acc {o['avg_accuracy']:.4f}  median L2 "
                  f"{o['avg_median_l2']:.1f}  {o['prompt_tokens_per_sample']} prompt tokens a sample -> "
                  f"{overall_file(run_dir(cfg, in_context_stage(variant)))}", flush=True)
    if a.data_curve or (every and curve_sizes_found(cfg)):
        o = data_curve(cfg)
        print("[controls] data curve: " + "  ".join(f"n {p['n'] or 'all'}: {p['accuracy']:.4f}" for p in o["points"]),
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
