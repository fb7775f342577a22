"""Dataset survey: what a researcher reads before training (PIGG's survey.py, as a report).

Usage: python -m data_prep survey --config EXP [--data DATA]   (or bash scripts/0_survey.sh)

Per user: samples, episodes, apps, screen sizes, action mix, the share of the user's samples in
apps no other user has ("exclusive app ratio": a proxy for how much personalization can help),
and for test users the train/test sizes of each fold. Writes DATA/survey/{survey.md, survey.csv,
samples_per_user.png, heatmap_user_U.png}. Reads only the built samples and report.json: no
image is decoded.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from .store import load_samples
from .io import read_json
from .kfold import fold_split, make_folds

GRID_BINS = 20  # heatmap cells per axis on the 0-1000 grid


def user_table(cfg: dict, samples: dict | None = None) -> pd.DataFrame:
    data = Path(cfg["paths"]["data"])
    samples = load_samples(data) if samples is None else samples
    report = read_json(data / "report.json") if (data / "report.json").exists() else {}
    app_users: dict[str, set] = {}
    for u, ss in samples.items():
        for s in ss:
            app_users.setdefault(s.app, set()).add(u)
    k, seed, mode = cfg["folds"]["k"], cfg["folds"]["seed"], cfg["folds"]["mode"]
    rows = []
    for u, ss in sorted(samples.items()):
        role = "test" if u in cfg["users"]["test"] else "global" if u in cfg["users"]["global"] else "unused"
        apps = Counter(s.app for s in ss)
        exclusive = sum(n for app, n in apps.items() if len(app_users[app]) == 1)
        acts = report.get("actions_per_user", {}).get(str(u), {})
        row = {"user": u, "role": role, "raw_user": ss[0].raw_user if ss else "",
               "samples": len(ss), "episodes": len({s.episode for s in ss}),
               "episodes_read": report.get("episodes_per_user", {}).get(str(u), 0),
               "apps": len(apps), "top_app": apps.most_common(1)[0][0] if apps else "",
               "screen_sizes": " ".join(sorted({f"{s.width}x{s.height}" for s in ss})),
               "exclusive_app_ratio": exclusive / len(ss) if ss else 0.0,
               "actions": sum(acts.values()),
               "click_share": acts.get("click", 0) / sum(acts.values()) if acts else float("nan"),
               "action_mix": " ".join(f"{a}:{n}" for a, n in sorted(acts.items()))}
        if role == "test" and len(ss) >= k:
            folds = make_folds(ss, k, seed, mode)
            row["folds_train_test"] = " ".join(f"{len(fold_split(folds, f)[0])}/{len(folds[f])}" for f in range(k))
        else:
            row["folds_train_test"] = ""
        rows.append(row)
    return pd.DataFrame(rows)


def heatmap(ss: list, user: int, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    h, _, _ = np.histogram2d([s.y for s in ss], [s.x for s in ss], bins=GRID_BINS, range=[[0, 1000], [0, 1000]])
    fig, ax = plt.subplots(figsize=(3, 5))
    im = ax.imshow(h, extent=(0, 1000, 1000, 0), aspect=2.0, cmap="magma")
    ax.set_title(f"user {user}: where they tap (n={len(ss)})", fontsize=9)
    ax.set_xlabel("x (0-1000)")
    ax.set_ylabel("y (0-1000)")
    fig.colorbar(im, ax=ax, fraction=0.08)
    plt.tight_layout()
    path = out / f"heatmap_user_{user}.png"
    plt.savefig(path, dpi=110)
    plt.close(fig)
    return path


def survey(cfg: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(cfg["paths"]["data"]) / "survey"
    out.mkdir(parents=True, exist_ok=True)
    samples = load_samples(cfg["paths"]["data"])
    df = user_table(cfg, samples)
    df.to_csv(out / "survey.csv", index=False)
    colors = df["role"].map({"test": "tab:orange", "global": "tab:blue", "unused": "tab:gray"})
    ax = df.plot.bar(x="user", y="samples", color=colors, legend=False, figsize=(max(6, len(df) * 0.15), 3.5))
    ax.set_ylabel("click samples")
    ax.set_title("Samples per user (orange: test users)")
    plt.tight_layout()
    plt.savefig(out / "samples_per_user.png", dpi=110)
    plt.close()
    maps = [heatmap(samples[u], u, out) for u in cfg["users"]["test"] if samples.get(u)]
    totals = {role: int(df[df.role == role].samples.sum()) for role in ("test", "global", "unused")}
    cols = ["user", "role", "raw_user", "samples", "episodes", "apps", "screen_sizes", "exclusive_app_ratio",
            "click_share", "folds_train_test"]
    lines = [f"# Dataset survey: {cfg['paths']['data']}\n",
             f"Users: {len(df)} ({(df.role == 'test').sum()} test, {(df.role == 'global').sum()} global). "
             f"Samples: {int(df.samples.sum())} (test {totals['test']}, global {totals['global']}, "
             f"unused {totals['unused']}). Episodes: {int(df.episodes.sum())}. "
             f"Folds: {cfg['folds']['mode']} K={cfg['folds']['k']} seed {cfg['folds']['seed']} (train/test per fold).\n",
             "Exclusive app ratio = share of a user's samples in apps no other user has.\n",
             df[cols].to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else df[cols].to_string(index=False),
             "\n![samples per user](samples_per_user.png)\n"] + [f"![{p.stem}]({p.name})" for p in maps]
    (out / "survey.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"wrote {out}/survey.md, survey.csv and {1 + len(maps)} PNGs\n" + df[cols].to_string(index=False)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
