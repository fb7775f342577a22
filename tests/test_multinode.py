"""Global fine-tuning as one run over several nodes: NNODES / NODE_RANK / MASTER_ADDR / MASTER_PORT make a launcher
one node of it (swift's torchrun rendezvous); node rank 0 owns the run folder, the other ranks only train."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess

import pytest

from conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_launchers_on_one_host_train_one_model_as_two_nodes(exp, tiny_model, tmp_path):
    """Two launchers, one process each, on the CPU (gloo): both exit 0, one checkpoint, a world size of 2 recorded,
    and only node rank 0 wrote the folder's own files (lock, generated YAML, manifest, log, markers)."""
    ov = ["--config", str(exp["path"]), "--set", f"paths.model={tiny_model}", "--set", f"paths.runs={tmp_path / 'runs'}",
          "--set", "name=mn"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NNODES": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    cmd = ["bash", str(ROOT / "scripts/2_finetune_global.sh"), "cpu", "--full", *ov, "max_steps=2", "save_steps=2"]
    procs = [subprocess.Popen(cmd, env={**env, "NODE_RANK": str(r)}, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in (1, 0)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2500:] for o in outs)
    run = tmp_path / "runs" / "mn" / "global_full"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    assert json.loads((run / "checkpoint-2" / "args.json").read_text())["global_world_size"] == 2
    assert (run / "DONE").exists() and (run / "manifest.json").exists() and (run / "generated" / "swift.yaml").exists()
    own = outs[0].split("[train] node 1: swift sft ")[1].split()[0]  # node 1's YAML: in a folder of its own
    assert not own.startswith(str(tmp_path)) and "[train] node 1: done" in outs[0]
    assert (run / "train.log").read_text().count("\n===== ") == 1  # one launch wrote the run's log: node 0's


def test_the_slurm_multi_node_example_starts_one_node_rank_per_node(exp, tiny_model, tmp_path):
    """scripts/slurm/global.sbatch under a stand-in srun (two nodes) and scontrol, in its dry-run form: each node's
    launcher renders the run with NNODES=2, its own NODE_RANK and node 0's address."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "srun").write_text("#!/usr/bin/env bash\nshift\nfor n in 0 1; do SLURM_NODEID=$n \"$@\" || exit $?; done\n")
    (bin_ / "scontrol").write_text("#!/usr/bin/env bash\necho node-a; echo node-b\n")
    for f in bin_.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "SLURM_JOB_ID": "7",
           "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_GPUS_PER_NODE": "2",
           "SLURM_SUBMIT_DIR": str(ROOT)}
    p = subprocess.run(["bash", "scripts/slurm/global.sbatch", "--config", str(exp["path"]), "--set",
                        f"paths.model={tiny_model}", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    for rank in (0, 1):
        assert f"NODE_RANK={rank}" in p.stdout
    assert p.stdout.count("NNODES=2") == 2 and p.stdout.count("MASTER_ADDR=node-a") == 2
    assert "deepspeed: zero3" in p.stdout and "NPROC_PER_NODE=2" in p.stdout


@pytest.mark.parametrize("env,match", [({"NNODES": "2"}, "set MASTER_ADDR"), ({"NNODES": "2", "NODE_RANK": "2",
                                                                           "MASTER_ADDR": "x"}, "0 <= NODE_RANK")])
def test_a_wrong_node_setting_is_refused(exp, env, match):
    p = subprocess.run(["bash", "scripts/2_finetune_global.sh", "cpu", "--full", "--config", str(exp["path"])],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True)
    assert p.returncode == 2 and match in p.stderr


def test_a_rank_that_ends_badly_after_rank_0_completed_the_run_is_not_a_failure(tmp_path):
    """torch's process-group threads can abort a rank's interpreter at exit once rank 0 has gone (seen: SIGABRT on
    node 1 after node 0 saved the run): such an exit counts as done only where rank 0 wrote a new TRAINED marker,
    never the one that was there before this node started."""
    from swift_configs.train import completed_by_rank0

    marker = tmp_path / "TRAINED"
    assert not completed_by_rank0(marker, None, wait_s=0.1)
    marker.write_text("checkpoint: old\n")
    assert not completed_by_rank0(marker, "checkpoint: old\n", wait_s=0.1)
    marker.write_text("checkpoint: new\n")
    assert completed_by_rank0(marker, "checkpoint: old\n", wait_s=0.1) and completed_by_rank0(marker, None, wait_s=0.1)
