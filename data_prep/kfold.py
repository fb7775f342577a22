"""K-fold splits: PIGG's per-sample algorithm (exact) and the leakage-free episode-grouped mode.

Usage: ``folds = create_k_folds(samples, k=3, seed=42)``; ``train, test = fold_split(folds, i)``
"""
from __future__ import annotations

import random
from collections import defaultdict


def create_k_folds(samples: list, k: int = 3, seed: int = 42) -> list[list]:
    """PIGG's utils/kfold.py to the letter: seeded shuffle of a copy, floor size, remainder last.

    ``random.Random(seed).shuffle`` draws the same sequence as ``random.seed(seed);
    random.shuffle(...)`` without touching the global generator.
    """
    shuffled = list(samples)
    random.Random(seed).shuffle(shuffled)
    size = len(shuffled) // k
    return [shuffled[i * size:] if i == k - 1 else shuffled[i * size:(i + 1) * size] for i in range(k)]


def create_episode_folds(samples: list, k: int = 3, seed: int = 42, key=lambda s: s.episode) -> list[list]:
    """Corrected mode: whole episodes per fold (no intent/screen leak), sizes as even as possible.

    Episodes are shuffled with the seed, then placed largest first (stable) into the fold with
    the fewest samples so far (lowest index on ties). Within a fold, samples keep input order.
    """
    groups: dict = defaultdict(list)
    for s in samples:
        groups[key(s)].append(s)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    names.sort(key=lambda e: -len(groups[e]))  # stable: equal sizes keep the shuffled order
    chosen: list[set] = [set() for _ in range(k)]
    sizes = [0] * k
    for e in names:
        i = min(range(k), key=lambda j: (sizes[j], j))
        chosen[i].add(e)
        sizes[i] += len(groups[e])
    return [[s for s in samples if key(s) in chosen[i]] for i in range(k)]


def fold_split(folds: list[list], test_fold: int) -> tuple[list, list]:
    """Training set = the other folds concatenated in fold order; test set = fold ``test_fold``."""
    train = [s for i, f in enumerate(folds) if i != test_fold for s in f]
    return train, list(folds[test_fold])


def make_folds(samples: list, k: int, seed: int, mode: str) -> list[list]:
    if mode == "random":
        return create_k_folds(samples, k, seed)
    if mode == "episode":
        return create_episode_folds(samples, k, seed)
    raise ValueError(f"fold mode must be random or episode, got {mode!r}")


def check_folds(folds: list[list], samples: list, ident=lambda s: s.id) -> None:
    """Each sample in exactly one fold; train/test of every fold disjoint. Raises on violation."""
    ids = [ident(s) for f in folds for s in f]
    if sorted(ids) != sorted(ident(s) for s in samples) or len(set(ids)) != len(ids):
        raise AssertionError("folds do not cover the samples exactly once")
    for i in range(len(folds)):
        train, test = fold_split(folds, i)
        if {ident(s) for s in train} & {ident(s) for s in test}:
            raise AssertionError(f"fold {i}: train and test overlap")
