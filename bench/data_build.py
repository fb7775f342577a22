"""Benchmark: data_prep build + export at FingerTip-20K scale (20k episodes, >100k clicks).

Usage: python bench/data_build.py [--root /tmp/ft_bench] [--episodes 20000] [--users 83]

Writes a tree in the FingerTip layout whose screenshots are hard links to a handful of real JPEGs
(so it costs little disk), then times `build` and `export` and prints wall time and peak RSS
(this process and its worker processes). Targets: <= 60 s and <= 1 GB peak RSS on 2 cores.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep.config import load_experiment  # noqa: E402
from data_prep.export import export  # noqa: E402
from data_prep.fingertip import build  # noqa: E402

SIZES = [(1080, 2340), (1080, 2400), (1440, 3200), (720, 1600)]


def make_tree(root: Path, episodes: int, users: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    shots = root / "_jpegs"
    shots.mkdir(parents=True)
    jpegs = []
    for i, (w, h) in enumerate(SIZES):
        buf = io.BytesIO()
        Image.new("RGB", (w, h), (40 * i, 120, 200)).save(buf, "JPEG", quality=70)
        p = shots / f"{i}.jpg"
        p.write_bytes(buf.getvalue())
        jpegs.append((p, w, h))
    clicks = 0
    per_user = episodes // users
    for u in range(1, users + 1):
        jp, w, h = jpegs[u % len(jpegs)]
        udir = root / str(u) / str(u) if u % 5 == 0 else root / str(u)
        for e in range(per_user + (1 if u <= episodes % users else 0)):
            name = f"2025{(e // 28) % 12 + 1:02d}{e % 28 + 1:02d}_{u % 24:02d}{e % 60:02d}{u % 60:02d}"
            ep = udir / name
            sd = ep / f"Screenshots_{name}"
            sd.mkdir(parents=True)
            lines, t = [], 1741498279844 + e * 100000
            n = rng.randint(4, 10)
            for s in range(n):
                t += 1500
                f = f"{t}.jpg"
                os.link(jp, sd / f)
                if s == n - 1:
                    act = "finished()"
                elif rng.random() < 0.85:
                    act = f"click(coordinates=({rng.randrange(w)}, {rng.randrange(h)}), content='按钮, \"{s}\"')"
                    clicks += 1
                else:
                    act = rng.choice(["press_back()", "type(text='hi')", "scroll(coordinates=(5, 5), direction='up')"])
                lines.append(json.dumps({f: act}, ensure_ascii=False))
            (ep / "action.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            (ep / "survey_result.json").write_text(json.dumps(
                {"user_id": str(u), "time": "x", "scenario": "s", "app": "com.x", "intentDescription": f"任务 {e}"},
                ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(shots)  # the links keep the data
    return clicks


def rss_mb() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/tmp/ft_bench")
    p.add_argument("--episodes", type=int, default=20000)
    p.add_argument("--users", type=int, default=83)
    a = p.parse_args(argv)
    root = Path(a.root)
    if root.exists():
        shutil.rmtree(root)
    raw, data = root / "raw", root / "data"
    t = time.time()
    clicks = make_tree(raw, a.episodes, a.users)
    print(f"tree: {a.episodes} episodes, {clicks} clicks, {a.users} users ({time.time() - t:.1f}s to write)")
    test = min(10, a.users - 1)  # PIGG's split (test 1-10, global 11-83) on as many users as the tree has
    cfg = load_experiment("pigg", [f"paths.raw={raw}", f"paths.data={data}", f"users.test=1-{test}",
                                   f"users.global={test + 1}-{a.users}"])
    t0 = time.time()
    rep = build(raw, data, progress=False)
    t1 = time.time()
    export(cfg)
    t2 = time.time()
    me, kids = rss_mb()
    print(f"build:  {t1 - t0:6.1f} s  ({rep['samples']} samples, {rep['episodes']} episodes, "
          f"skipped {sum(rep['skipped'].values())})")
    print(f"export: {t2 - t1:6.1f} s")
    print(f"total:  {t2 - t0:6.1f} s   peak RSS: main {me:.0f} MB, largest worker {kids:.0f} MB")
    print(f"cores: {os.cpu_count()}  python {sys.version.split()[0]}")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
