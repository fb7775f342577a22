"""The data of the controls: the data-efficiency curve's training subsets and in-context personalization's prompts.

Usage: ``write_curve(cfg, sizes)`` -> {n: {user: {fold: rows}}}; ``write_in_context(cfg, variant, k)``;
``similar(target, pool, k)``.

Both are made from the experiment's export (data_prep/export.py ``check_export``: its folds, prompt and budget) and
written beside it under DATA/swift[_<family>]/controls/ (names: data_prep/rundir.py), each file with its ``.ids``
side file, atomically. They are deterministic, so a re-run rewrites the same bytes.

- Data curve: per test user and fold, the fold's training samples shuffled once with Python's ``random`` seeded
  ``folds.seed + 1000 * user + fold``, and the first n taken for each n: a smaller n is a subset of a larger one, the
  hold-out is the fold's own. An n at or above the fold's size is the whole set (the point says how many it had).
- In-context: each hold-out sample gets k of the same user's samples of the fold's training set before it, picked by
  instruction similarity: the Jaccard index of the two instructions' sets of character bigrams (works on Chinese
  text, no model, no randomness), ties broken by the pool's order. ``image``: the earlier turns are the training
  rows themselves (screenshot, prompt, answer); ``text``: the instruction alone and the answer's point alone
  (a grounding block), no screenshot. The sample's own turn is the exported prompt and answer.
Imports no torch.
"""
from __future__ import annotations

import random
from pathlib import Path

from .export import Writer, check_export, swift_dir
from .family import family
from .io import write_jsonl, write_lines
from .kfold import fold_split, make_folds
from .rundir import curve_files, in_context_files
from .schema import Sample, answer_text, prompt_text
from .runtime.lock import FolderLock
from .store import load_samples

VARIANTS = ("image", "text")


def folds_of(cfg: dict) -> dict[int, list[tuple[list[Sample], list[Sample]]]]:
    """{user: [(train, test) per fold]}: the export's folds, made again from the same samples and settings."""
    check_export(cfg)
    samples = load_samples(cfg["paths"]["data"], cfg["users"]["test"])
    k, seed, mode = cfg["folds"]["k"], cfg["folds"]["seed"], cfg["folds"]["mode"]
    return {u: [fold_split(make_folds(ss, k, seed, mode), f) for f in range(k)] for u, ss in samples.items()}


def curve_subset(train: list[Sample], n: int, seed: int, user: int, fold: int) -> list[Sample]:
    order = list(train)
    random.Random(seed + 1000 * user + fold).shuffle(order)
    return order[:n]


def curve_sizes(cfg: dict, sizes: list[int]) -> dict[int, dict[int, dict[int, int]]]:
    """What write_curve would write: {n: {user: {fold: rows}}}; writes nothing."""
    return {n: {u: {f: min(n, len(train)) for f, (train, _) in enumerate(folds)} for u, folds in folds_of(cfg).items()}
            for n in sizes}


def write_curve(cfg: dict, sizes: list[int]) -> dict[int, dict[int, dict[int, int]]]:
    """The curve's training files; {n: {user: {fold: rows written}}}."""
    out, write, seed = swift_dir(cfg), Writer(cfg, swift_dir(cfg), swift_dir(cfg)), cfg["folds"]["seed"]
    counts: dict = {}
    with FolderLock(cfg["paths"]["data"], "data folder"):
        for u, folds in folds_of(cfg).items():
            for f, (train, _) in enumerate(folds):
                for n in sizes:
                    counts.setdefault(n, {}).setdefault(u, {})[f] = write(
                        curve_files(out, n, u, f)["train"], curve_subset(train, n, seed, u, f))
    return counts


def _bigrams(text: str) -> set[str]:
    text = "".join(text.split())
    return {text[i:i + 2] for i in range(len(text) - 1)} or {text}


def similar(target: Sample, pool: list[Sample], k: int) -> list[Sample]:
    """The k samples of ``pool`` whose instructions are most like ``target``'s (module docstring), most similar first."""
    t = _bigrams(target.instruction)
    scored = [(-len(t & (b := _bigrams(s.instruction))) / len(t | b), i) for i, s in enumerate(pool)]
    return [pool[i] for _, i in sorted(scored)[:k]]


def in_context_row(target: Sample, examples: list[Sample], variant: str, prompt: str, point) -> dict:
    """A swift row: the examples as earlier turns (oldest first, the most similar last), then the sample's own turn;
    ``point(s)``: a sample's answer point in the model family's coordinates."""
    if variant not in VARIANTS:
        raise ValueError(f"in-context variant {variant!r}: want one of {VARIANTS}")
    messages, images = [], []
    for s in reversed(examples):
        x, y = point(s)
        if variant == "image":
            messages += [{"role": "user", "content": "<image>" + prompt_text(s.instruction, prompt)},
                         {"role": "assistant", "content": answer_text(s.content, x, y)}]
            images.append(s.image)
        else:
            messages += [{"role": "user", "content": s.instruction},
                         {"role": "assistant", "content": f"```grounding\n[{x}, {y}]\n```"}]
    x, y = point(target)
    messages += [{"role": "user", "content": "<image>" + prompt_text(target.instruction, prompt)},
                 {"role": "assistant", "content": answer_text(target.content, x, y)}]
    return {"messages": messages, "images": images + [target.image]}


def write_in_context(cfg: dict, variant: str, k: int) -> dict[int, dict[int, Path]]:
    """In-context hold-out files of every test user and fold; {user: {fold: test.jsonl}}."""
    fam, budget, prompt = family(cfg), cfg["image_max_token_num"], cfg["data"]["prompt"]
    point = lambda s: fam.answer_point(s, budget)  # noqa: E731
    out, files = swift_dir(cfg), {}
    with FolderLock(cfg["paths"]["data"], "data folder"):
        for u, folds in folds_of(cfg).items():
            for f, (train, test) in enumerate(folds):
                path = in_context_files(out, variant, k, u, f)["test"]
                write_lines(path.with_suffix(".ids"), (s.id for s in test))
                write_jsonl(path, (in_context_row(s, similar(s, train, k), variant, prompt, point) for s in test))
                files.setdefault(u, {})[f] = path
    return files
