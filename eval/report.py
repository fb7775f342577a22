"""The Vanilla / Global / Global+Personalized report, from result files only (no GPU, no model).

Usage: python -m eval.report --config EXP   (writes runs/<exp>/report/{report.md, overall.csv,
       per_user.csv, significance.csv, per_user_accuracy.png, per_user_difference.png, l2_cdf.png})

Reads runs/<exp>/eval/<name>/ (vanilla and checkpoint evals), runs/<exp>/person_*/ (per-user K-fold)
and runs/<exp>/user_tokens_*/ (one model for all test users: tagged, or pooled), every method side by side.
On the real dataset (test users 1-10) PIGG's published numbers stand beside ours.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

from data_prep.config import load_experiment
from data_prep.runtime.cli import parser, run
from data_prep.summary import same_build
from data_prep.rundir import (IN_CONTEXT_PREFIX, TOKENS_PREFIX, cross_user_dir, curve_dir, eval_outputs, overall_file,
                              run_dir, tokens_stage, user_of, user_summaries)

from .metrics import MAX_L2, corrected_l2, l2

PIGG_PUBLISHED = {  # README / protocol notes, users 1-10
    "vanilla": {"acc": 26.03, "mean_l2": 373.39, "median_l2": 338.25,
                "per_user": [36.19, 17.32, 22.10, 26.37, 29.75, 29.51, 14.76, 27.06, 27.17, 30.08]},
    "global": {"acc": 34.22, "mean_l2": 322.69, "median_l2": 290.15,
               "per_user": [45.90, 22.52, 28.88, 38.66, 33.92, 36.72, 24.24, 38.82, 34.53, 37.99]},
    "personalized": {"acc": 44.42, "mean_l2": 260.50, "median_l2": 185.29,
                     "per_user": [51.09, 38.86, 38.68, 51.13, 42.23, 38.69, 37.30, 40.39, 46.44, 59.36]},
}


def find_models(cfg: dict) -> list[dict]:
    """[{name, role, dir, kind}] in protocol order: vanilla, global evals, personalized runs."""
    root = run_dir(cfg)
    found = []
    for d in sorted((root / "eval").glob("*/")) if (root / "eval").is_dir() else []:
        if overall_file(d).exists():
            role = "vanilla" if d.name == "vanilla" else "global"
            found.append({"name": d.name, "role": role, "dir": d, "kind": "eval"})
    # per-user adapters (personalized); one adapter for all test users, tagged or pooled (one_model)
    for pattern, role in (("person_*/", "personalized"), (f"{TOKENS_PREFIX}*/", "one_model"),
                          (f"{IN_CONTEXT_PREFIX}*/", "in_context")):
        for d in sorted(root.glob(pattern)):
            if overall_file(d).exists():
                found.append({"name": f"global+{d.name}", "role": role, "dir": d, "kind": "person"})
    order = {"vanilla": 0, "global": 1, "personalized": 2, "one_model": 3, "in_context": 4}
    return sorted(found, key=lambda m: (order[m["role"]], m["name"]))


def out_files(model: dict) -> list[Path]:
    """A model's per-sample result files: one per user (an eval), or per user and fold (a K-fold run)."""
    return eval_outputs(model["dir"], per_fold=model["kind"] != "eval")


def records(model: dict) -> list[dict]:
    out = []
    for f in out_files(model):
        out += json.loads(f.read_text(encoding="utf-8"))
    return out


def per_sample(model: dict, delta: float) -> dict[int, dict[str, tuple[int, float]]]:
    """{user: {sample id: (hit, L2)}} of a model, PIGG-compatible scoring (its parser, as the tables)."""
    out: dict[int, dict] = {}
    for f in out_files(model):
        user = user_of(f, model["dir"])
        for r in json.loads(f.read_text(encoding="utf-8")):
            d = l2(r["pred_pigg"], r["gt"])
            out.setdefault(user, {})[r["id"]] = (int(d <= delta), d)
    return out


def significance(models: list[dict], delta: float, n_resamples: int = 10000) -> pd.DataFrame:
    """Each model against the first Global one (and each tagged one-model run against the pooled control),
    per user (paired over the user's samples) and overall (paired over users): accuracy and median-L2
    differences with 95 % bootstrap intervals, and the Wilcoxon signed-rank p of the paired L2 distances."""
    import numpy as np

    from .stats import paired_bootstrap, wilcoxon_p

    base = next((m for m in models if m["role"] == "global"), None)
    pooled = next((m for m in models if m["name"].endswith(tokens_stage("pooled"))), None)
    pairs = [(base, m) for m in models if base is not None and m is not base]
    # what a user tag adds: each tagged one-model run against the pooled control (same data, no tag)
    pairs += [(pooled, m) for m in models if pooled is not None and m["role"] == "one_model" and m is not pooled]
    rows, cache = [], {}
    for ref_model, m in pairs:
        ref = cache.setdefault(ref_model["name"], per_sample(ref_model, delta))
        base_name = ref_model["name"]
        got = cache.setdefault(m["name"], per_sample(m, delta))
        accs, meds = [], []
        for u in sorted(set(ref) & set(got)):
            ids = [i for i in ref[u] if i in got[u]]
            if not ids:
                continue
            a_hit, b_hit = [ref[u][i][0] for i in ids], [got[u][i][0] for i in ids]
            a_l2, b_l2 = [ref[u][i][1] for i in ids], [got[u][i][1] for i in ids]
            acc = paired_bootstrap(a_hit, b_hit, n_resamples, seed=u)
            med = paired_bootstrap(a_l2, b_l2, n_resamples, seed=u, stat=np.median)
            rows.append({"model": m["name"], "vs": base_name, "user": str(u), "samples": len(ids),
                         "acc diff (pp)": 100 * acc["diff"], "acc lo": 100 * acc["lo"], "acc hi": 100 * acc["hi"],
                         "median L2 diff": med["diff"], "median lo": med["lo"], "median hi": med["hi"],
                         "wilcoxon p (L2)": val(wilcoxon_p(a_l2, b_l2))})
            accs.append((np.mean(a_hit), np.mean(b_hit)))
            meds.append((np.median(a_l2), np.median(b_l2)))
        if len(accs) >= 2:  # overall: users are the units (the unweighted mean over users PIGG reports)
            acc = paired_bootstrap([x for x, _ in accs], [y for _, y in accs], n_resamples, seed=0)
            med = paired_bootstrap([x for x, _ in meds], [y for _, y in meds], n_resamples, seed=0)
            rows.append({"model": m["name"], "vs": base_name, "user": "all (over users)", "samples": len(accs),
                         "acc diff (pp)": 100 * acc["diff"], "acc lo": 100 * acc["lo"], "acc hi": 100 * acc["hi"],
                         "median L2 diff": med["diff"], "median lo": med["lo"], "median hi": med["hi"],
                         "wilcoxon p (L2)": math.nan})
    return pd.DataFrame(rows)


def significance_plot(sig: pd.DataFrame, out: Path) -> Path | None:
    """Per-user accuracy difference of each method against Global, with its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_user = sig[(sig["user"] != "all (over users)") & (sig["vs"] == sig["vs"].iloc[0])] if not sig.empty else sig
    if per_user.empty:
        return None
    names = list(dict.fromkeys(per_user["model"]))
    users = list(dict.fromkeys(per_user["user"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(users) * max(1, len(names)) / 2), 4))
    w = 0.8 / len(names)
    for k, name in enumerate(names):
        d = per_user[per_user["model"] == name].set_index("user").reindex(users)
        xs = [i + (k - (len(names) - 1) / 2) * w for i in range(len(users))]
        err = [d["acc diff (pp)"] - d["acc lo"], d["acc hi"] - d["acc diff (pp)"]]
        ax.errorbar(xs, d["acc diff (pp)"], yerr=err, fmt="o", capsize=3, label=name)
    ax.axhline(0, color="gray", lw=1)
    ax.set_xticks(range(len(users)), [f"user {u}" for u in users])
    ax.set_ylabel(f"accuracy − {per_user['vs'].iloc[0]} (pp)")
    ax.set_title("Accuracy against Global per user (95 % paired bootstrap interval)", fontsize=10)
    ax.legend(fontsize=8)
    plt.tight_layout()
    path = out / "per_user_difference.png"
    plt.savefig(path, dpi=120)
    plt.close()
    return path


def pct(v: float | None) -> float:
    """A share in % for a table; an undefined one (null in the JSON) is NaN there, '–' in report.md."""
    return math.nan if v is None else 100 * v


def val(v: float | None) -> float:
    return math.nan if v is None else v


def tables(models: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, per_user = [], []
    for m in models:
        o = json.loads(overall_file(m["dir"]).read_text(encoding="utf-8"))
        rows.append({"model": m["name"], "role": m["role"], "users": o["n_users"],
                     "acc@140 (%)": pct(o["avg_accuracy"]), "mean L2": val(o["avg_mean_l2"]),
                     "off-screen (%)": pct(o.get("avg_off_screen_rate")), "median L2": val(o["avg_median_l2"]),
                     "corrected acc (%)": pct(o["corrected_avg_accuracy"]),
                     "corrected mean L2": val(o["corrected_avg_mean_l2"]),
                     "corrected median L2": val(o["corrected_avg_median_l2"]),
                     "parse fail (%)": pct(o["avg_parse_fail_rate"]),
                     "element hit (%)": pct(o["avg_element_hit_rate"])})
        for s in user_summaries(m["dir"]):
            u = json.loads(s.read_text(encoding="utf-8"))
            per_user.append({"model": m["name"], "role": m["role"], "user": u["user_id"], "folds": u["n_folds"],
                             "acc@140 (%)": pct(u["avg_accuracy"]), "acc std": pct(u["std_accuracy"]),
                             "mean L2": val(u["avg_mean_l2"]), "off-screen (%)": pct(u.get("avg_off_screen_rate")),
                             "median L2": val(u["avg_median_l2"]),
                             "corrected acc (%)": pct(u["corrected_avg_accuracy"]),
                             "parse fail (%)": pct(u["avg_parse_fail_rate"])})
    return pd.DataFrame(rows), pd.DataFrame(per_user)


def ordering(overall: pd.DataFrame, per_user: pd.DataFrame) -> dict:
    """Does the run show PIGG's ordering (Global > Vanilla, Personalized > Global)?"""
    best = {r: overall[overall.role == r].iloc[0] for r in ("vanilla", "global", "personalized")
            if (overall.role == r).any()}
    out = {}
    for lo, hi in (("vanilla", "global"), ("global", "personalized")):
        if lo in best and hi in best:
            a, b = best[lo], best[hi]
            out[f"{hi}>{lo}"] = {"acc": bool(b["acc@140 (%)"] > a["acc@140 (%)"]),
                                 "median_l2": bool(b["median L2"] < a["median L2"])}
            pu = per_user.pivot_table(index="user", columns="model", values="median L2")
            if a["model"] in pu and b["model"] in pu:
                out[f"{hi}>{lo}"]["users_better_median_l2"] = int((pu[b["model"]] < pu[a["model"]]).sum())
                out[f"{hi}>{lo}"]["users"] = int(pu[[a["model"], b["model"]]].dropna().shape[0])
    return out


def plots(models: list[dict], per_user: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if not per_user.empty:
        pv = per_user.pivot_table(index="user", columns="model", values="acc@140 (%)")
        pv = pv[[m["name"] for m in models if m["name"] in pv.columns]]
        ax = pv.plot.bar(figsize=(max(6, 1.2 * len(pv)), 4), rot=0)
        ax.set_ylabel("click accuracy @140 (%)")
        ax.set_title("Per-user click accuracy (PIGG-compatible)")
        ax.legend(fontsize=8)
        plt.tight_layout()
        paths.append(out / "per_user_accuracy.png")
        plt.savefig(paths[-1], dpi=120)
        plt.close()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        d = sorted(corrected_l2(r["pred"], r["gt"]) for r in records(m))
        if d:
            ax.plot(d, [(i + 1) / len(d) for i in range(len(d))], label=m["name"])
    ax.axvline(140, color="gray", ls="--", lw=1)
    ax.set_xlabel("L2 distance on the 0-1000 grid (parse failure, off screen = %.0f)" % MAX_L2)
    ax.set_ylabel("share of samples ≤ x")
    ax.set_xlim(0, 1000)
    ax.set_title("CDF of click error (corrected parser)")
    ax.legend(fontsize=8)
    plt.tight_layout()
    paths.append(out / "l2_cdf.png")
    plt.savefig(paths[-1], dpi=120)
    plt.close()
    return paths


def _md(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)\n"
    cols = list(df.columns)
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) and not math.isnan(v) else ("–" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def controls_sections(cfg: dict, out: Path) -> list[str]:
    """The cross-user control and the data-efficiency curve (eval/controls.py), where they were run; their plots are
    copied beside report.md."""
    import shutil

    md = []
    cross = overall_file(cross_user_dir(cfg))
    if cross.exists():
        o = json.loads(cross.read_text(encoding="utf-8"))
        ci = o["own_minus_others"]
        rows = pd.DataFrame([{"user": r["user"], "own adapter acc (%)": pct(r["own_accuracy"]),
                              "others' adapters acc (%)": pct(r["others_accuracy"]), "own median L2": r["own_median_l2"],
                              "others' median L2": r["others_median_l2"]} for r in o["per_user"]])
        md += ["\n## Is it the user? Each user's adapter on the other users' hold-outs\n",
               f"Own adapter {pct(o['own_accuracy']):.2f} % against the other users' adapters "
               f"{pct(o['others_accuracy']):.2f} % on the same hold-outs (own - others {pct(ci['diff']):+.2f} points, "
               f"95 % bootstrap over users {pct(ci['lo']):+.2f} to {pct(ci['hi']):+.2f}); median L2 "
               f"{o['own_median_l2']:.1f} against {o['others_median_l2']:.1f}. Means over {o['folds']} folds.\n",
               _md(rows)]
        png = Path(cross_user_dir(cfg)) / "cross_user.png"
        if png.exists():
            shutil.copy(png, out / png.name)
            md.append(f"![cross_user]({png.name})\n")
    curve = overall_file(curve_dir(cfg))
    if curve.exists():
        o = json.loads(curve.read_text(encoding="utf-8"))
        rows = pd.DataFrame([{"training samples": "all" if p["n"] is None else p["n"], "users": p["users"],
                              "acc (%)": pct(p["accuracy"]), "lo": pct(p["lo"]), "hi": pct(p["hi"]),
                              "median L2": p["median_l2"]} for p in o["points"]])
        md += ["\n## How many clicks does personalization need?\n",
               "Per-user LoRA folds trained on n of the fold's training samples (nested seeded subsets, the same "
               "hold-outs); all = the personalized stage; 95 % bootstrap interval over users.\n", _md(rows)]
        png = Path(curve_dir(cfg)) / "data_curve.png"
        if png.exists():
            shutil.copy(png, out / png.name)
            md.append(f"![data_curve]({png.name})\n")
    return md


def report(cfg: dict) -> dict:
    models = find_models(cfg)
    out = run_dir(cfg, "report")
    out.mkdir(parents=True, exist_ok=True)
    if not models:
        raise FileNotFoundError(f"{run_dir(cfg)}: no finished stage (no overall.json) to report")
    same_build([json.loads(overall_file(m["dir"]).read_text(encoding="utf-8")) for m in models],
               f"the report of {run_dir(cfg)} ({', '.join(m['name'] for m in models)})")
    overall, per_user = tables(models)
    overall.to_csv(out / "overall.csv", index=False, na_rep="n/a")
    per_user.to_csv(out / "per_user.csv", index=False, na_rep="n/a")
    pngs = plots(models, per_user, out)
    sig = significance(models, cfg["eval"]["delta"])
    sig.to_csv(out / "significance.csv", index=False, na_rep="n/a")
    sig_png = significance_plot(sig, out)
    pngs += [sig_png] if sig_png else []
    order = ordering(overall, per_user)
    md = [f"# PIGG report: {cfg['name']}\n", f"Experiment: `{cfg['config_path']}`  \n"
          f"Test users: {cfg['users']['test']}; folds: {cfg['folds']['mode']} K={cfg['folds']['k']} "
          f"seed {cfg['folds']['seed']}; δ = {cfg['eval']['delta']} on the 0-1000 grid.\n",
          "## Overall (unweighted mean over users)\n",
          "PIGG-compatible: PIGG's parser, an unparseable answer scored as (0, 0), nothing clamped: an answer off "
          "the screen enters its mean L2 at its full distance (a few degenerate answers can dominate it), so read "
          "the mean L2 beside `off-screen (%)`, the share of answers outside the 0-1000 grid. Corrected: a parse "
          f"failure and an off-screen answer are misses at distance {MAX_L2:.0f} (never clamped into a hit).\n",
          _md(overall.drop(columns=["role"]))]
    if cfg["users"]["test"] == list(range(1, 11)):
        pub = pd.DataFrame([{"model": k, "acc@140 (%)": v["acc"], "mean L2": v["mean_l2"],
                             "median L2": v["median_l2"]} for k, v in PIGG_PUBLISHED.items()])
        md += ["\n### PIGG's published numbers (users 1-10)\n", _md(pub)]
    md += ["\n## Per user\n", _md(per_user.drop(columns=["role"]))]
    if not sig.empty:
        md += ["\n## Against Global (and tagged one-model runs against pooled): differences with 95 % intervals\n",
               "Paired over each user's samples (bootstrap over sample indices, 10,000 resamples; Wilcoxon "
               "signed-rank p of the paired L2 distances), and overall paired over users. An interval that "
               "excludes 0 is a difference beyond resampling noise for that user. PIGG-compatible scoring.\n",
               _md(sig)]
    md += controls_sections(cfg, out)
    md += ["\n## Ordering (PIGG found Global > Vanilla and Global+Personalized > Global)\n",
           "```\n" + json.dumps(order, indent=1) + "\n```\n"]
    md += ["\n## Plots\n"] + [f"![{p.stem}]({p.name})\n" for p in pngs]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    return {"dir": str(out), "overall": overall, "per_user": per_user, "ordering": order, "significance": sig}


def main(argv=None) -> int:
    p = parser("python -m eval.report", __doc__)
    p.add_argument("--dry-run", action="store_true", help="list the finished stages the report would read")
    a = p.parse_args(argv)
    if a.dry_run:
        return run(lambda: print("\n".join(f"{m['role']}: {m['name']} ({m['dir']})"
                                           for m in find_models(load_experiment(a.config, a.overrides))) or
                                 "no finished stage yet"))
    return run(lambda: show(report(load_experiment(a.config, a.overrides))))


def show(r: dict) -> None:
    cols = ["model", "acc@140 (%)", "mean L2", "off-screen (%)", "median L2", "corrected acc (%)", "parse fail (%)"]
    print(r["overall"][cols].to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="–"))
    print(f"\nordering: {json.dumps(r['ordering'])}")
    print(f"full report: {r['dir']}/report.md")


if __name__ == "__main__":
    sys.exit(main())
