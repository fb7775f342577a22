"""New user tokens start from distinct rows (data_prep/patches/token_init.py): on an embedding whose spare rows all
collapsed onto one vector (what a tied-embedding fine-tune leaves), each new row is a draw from the trained rows'
per-dimension distribution: the new rows are as far apart as trained rows are, and the same on every run."""
from __future__ import annotations

import torch

from data_prep.patches.token_init import init_rows


def test_new_rows_are_drawn_from_the_trained_rows_distribution():
    g = torch.Generator().manual_seed(0)
    trained = 3.0 + 0.2 * torch.randn(5000, 64, generator=g)  # a common direction plus spread, as after training
    spare = torch.full((16, 64), 3.0)  # collapsed: every spare row the same vector
    w = torch.cat([trained, spare]).to(torch.bfloat16)
    new = [5000, 5001, 5002]
    init_rows(w, new, n_trained=5000, seed=0)
    rows = w[new].float()
    dist_new = torch.pdist(rows)
    dist_trained = torch.pdist(trained[:200]).median()
    assert (dist_new > 0.7 * dist_trained).all() and (dist_new < 1.3 * dist_trained).all()
    assert torch.allclose(rows.mean(), trained.mean(), atol=0.1)
    assert torch.equal(w[5003:].float(), spare[3:])  # only the new rows change
    again = torch.cat([trained, spare]).to(torch.bfloat16)
    init_rows(again, new, n_trained=5000, seed=0)
    assert torch.equal(again, w)  # deterministic
