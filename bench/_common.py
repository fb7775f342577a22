"""Shared by the GPU bench scripts: a temporary experiment on synthetic data, built and exported."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def prepare_experiment(tmp: Path, model: Path, name: str, changes: dict) -> tuple[Path, dict]:
    """Write tmp/exp.yaml (base pigg.yaml; data under tmp/raw must exist), build and export it."""
    from data_prep.config import load_experiment
    from data_prep.export import export
    from data_prep.fingertip import build

    exp = {"base": str(ROOT / "swift_configs/experiments/pigg.yaml"), "name": name,
           "paths": {"raw": str(tmp / "raw"), "data": str(tmp / "data"), "runs": str(tmp / "runs"),
                     "model": str(model)}, **changes}
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    cfg = load_experiment(path)
    build(cfg["paths"]["raw"], cfg["paths"]["data"], progress=False)
    export(cfg)
    return path, cfg
