"""A deployable personalized model: a fold's LoRA merged into its base with `swift export --merge_lora`.

Usage: python -m swift_configs.export --config EXP --user 1 --fold 0 [--run person_lora] [--gpus cpu|0] [--fresh]
       python -m swift_configs.export --config EXP --adapter CKPT --out DIR

Writes runs/<exp>/<run>/user_U/fold_F/merged/ (a complete model folder: weights, config, processor files;
loads with transformers or as --model of eval.run) and a MERGED marker naming the adapter it came from.
The base is the one the adapter was trained on (its args.json); a QLoRA adapter is merged into the
unquantized base (swift does so). An existing merged folder is kept unless --fresh.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from data_prep.config import ROOT, ConfigError, load_experiment
from data_prep.runtime.cli import nonneg_int, parser, positive_int, run
from data_prep.runtime.procenv import child_env, swift_args as plugin_args
from data_prep.rundir import done, fold_dir, marker_checkpoint, read_marker, run_dir, write_marker


def merge_command(adapter: Path, out: Path, device: str) -> list[str]:
    return [sys.executable, "-m", "swift.cli.main", "export", "--adapters", str(adapter), "--merge_lora", "true",
            "--output_dir", str(out), "--device_map", "cpu" if device == "cpu" else "auto",
            "--external_plugins", *plugin_args()["external_plugins"]]


def merge(cfg: dict, adapter: Path, out: Path, device: str = "cpu", fresh: bool = False) -> Path:
    adapter, out = Path(adapter).resolve(), Path(out).resolve()
    if not (adapter / "adapter_config.json").exists():
        raise ConfigError(f"{adapter}: not a LoRA checkpoint (no adapter_config.json); full fine-tuning "
                          "checkpoints are complete models already")
    done = out / "MERGED"
    if done.exists() and not fresh:
        if Path(read_marker(done)["adapter"]) != adapter:
            raise ConfigError(f"{out} holds a merge of {read_marker(done)['adapter']}, not {adapter}: use --fresh")
        print(f"[export] {out} already merged from {adapter}")
        return out
    if out.exists():
        shutil.rmtree(out)  # a half-written merge (no MERGED marker), or --fresh
    env = child_env(cfg, devices=device)
    log = out.parent / "export.log"
    cmd = merge_command(adapter, out, device)
    print(f"[export] {' '.join(cmd[2:])}  (log: {log})", flush=True)
    with open(log, "a", encoding="utf-8") as f:
        rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0 or not (out / "config.json").exists():
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise ConfigError(f"swift export failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))
    write_marker(done, adapter=adapter)
    print(f"[export] merged model: {out}")
    return out


def main(argv=None) -> int:
    p = parser("python -m swift_configs.export", __doc__)
    p.add_argument("--run", default="person_lora", help="the run folder under runs/<exp>/ (default person_lora)")
    p.add_argument("--user", type=positive_int)
    p.add_argument("--fold", type=nonneg_int)
    p.add_argument("--adapter", help="a LoRA checkpoint (instead of --user/--fold)")
    p.add_argument("--out", help="default: next to the fold, fold_F/merged")
    p.add_argument("--gpus", default="cpu", help="cpu or one GPU id for the merge")
    p.add_argument("--fresh", action="store_true", help="merge again over an existing merged folder")
    p.add_argument("--dry-run", action="store_true", help="print the merge command; run nothing")
    a = p.parse_args(argv)
    return run(lambda: export_fold(a))


def export_fold(a) -> None:
    cfg = load_experiment(a.config, a.overrides)
    if a.adapter:
        adapter = Path(a.adapter)
        out = Path(a.out) if a.out else adapter.parent / "merged"
    else:
        if a.user is None or a.fold is None:
            raise ConfigError("give --user and --fold (or --adapter CKPT)")
        fold = fold_dir(run_dir(cfg, a.run), a.user, a.fold)
        if not done(fold).exists():
            raise ConfigError(f"{fold}: the fold is not finished (no DONE marker); run scripts/4_finetune_person.sh")
        adapter = marker_checkpoint(done(fold))
        out = Path(a.out) if a.out else fold / "merged"
    if a.dry_run:
        print(" ".join(merge_command(Path(adapter).resolve(), Path(out).resolve(), a.gpus)))
        return
    merge(cfg, adapter, out, a.gpus, a.fresh)


if __name__ == "__main__":
    sys.exit(main())
