"""Folds: PIGG's algorithm to the letter, the episode mode, disjointness; export rows load in swift."""
from __future__ import annotations

import json
import random
from collections import namedtuple

import pytest

from data_prep.export import ExportError, export, swift_paths
from data_prep.store import load_samples
from data_prep.kfold import check_folds, create_episode_folds, create_k_folds, fold_split
from data_prep.schema import answer_text

PIGG_SIZES = [268, 1310, 561, 1058, 457, 305, 3700, 255, 530, 1619]


def pigg_reference(samples, k=3, seed=42):
    """PIGG's utils/kfold.py, verbatim in spirit: the global random module."""
    random.seed(seed)
    shuffled = samples.copy()
    random.shuffle(shuffled)
    fold_size = len(shuffled) // k
    folds = []
    for i in range(k):
        if i == k - 1:
            folds.append(shuffled[i * fold_size:])
        else:
            folds.append(shuffled[i * fold_size:(i + 1) * fold_size])
    return folds


@pytest.mark.parametrize("n", PIGG_SIZES)
def test_folds_equal_pigg(n):
    samples = [f"s{i}" for i in range(n)]
    assert create_k_folds(samples, 3, 42) == pigg_reference(samples)
    check_folds(create_k_folds(samples, 3, 42), samples, ident=lambda s: s)


def test_fold_sizes_follow_the_code_not_the_table():
    assert [len(f) for f in create_k_folds(list(range(268)), 3, 42)] == [89, 89, 90]
    assert [len(f) for f in create_k_folds(list(range(3700)), 3, 42)] == [1233, 1233, 1234]


def test_train_is_other_folds_in_order():
    folds = [[1, 2], [3, 4], [5, 6, 7]]
    assert fold_split(folds, 1) == ([1, 2, 5, 6, 7], [3, 4])


def test_episode_folds_keep_episodes_whole_and_balanced():
    S = namedtuple("S", "id episode")
    rng = random.Random(0)
    samples = [S(f"{e}/{j}", f"ep{e}") for e in range(60) for j in range(rng.randint(1, 6))]
    folds = create_episode_folds(samples, 3, 42)
    check_folds(folds, samples)
    owner = {}
    for i, f in enumerate(folds):
        for s in f:
            assert owner.setdefault(s.episode, i) == i
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 6  # at most one episode apart
    assert create_episode_folds(samples, 3, 42) == folds


def test_export_layout_and_disjointness(exp):
    cfg = exp["cfg"]
    data = exp["tmp"] / "data" / "swift"
    gl = (data / "global_train.ids").read_text().splitlines()
    samples = load_samples(exp["tmp"] / "data")
    assert sorted(gl) == sorted(s.id for u in (3, 4, 5, 6) for s in samples[u])
    for u in (1, 2):
        all_ids = (data / f"user_{u}" / "all.ids").read_text().splitlines()
        assert set(all_ids).isdisjoint(gl)
        tests = []
        for f in range(3):
            p = swift_paths(cfg, u, f)
            tr = p["train"].with_suffix(".ids").read_text().splitlines()
            te = p["test"].with_suffix(".ids").read_text().splitlines()
            assert set(tr).isdisjoint(te) and sorted(tr + te) == sorted(all_ids)
            tests += te
        assert sorted(tests) == sorted(all_ids)
        # the exported folds are PIGG's folds of the user's samples in file order
        want = create_k_folds([s.id for s in samples[u]], 3, 42)
        assert [swift_paths(cfg, u, f)["test"].with_suffix(".ids").read_text().splitlines() for f in range(3)] == want
    row = json.loads((data / "user_1" / "all.jsonl").read_text().splitlines()[0])
    s = samples[1][0]
    assert row["images"] == [s.image] and row["messages"][0]["content"].startswith("<image>Given a GUI image")
    assert s.instruction in row["messages"][0]["content"]
    assert row["messages"][1]["content"] == answer_text(s.content, s.x, s.y)


def test_export_refuses_other_settings_without_force(exp):
    cfg = {**exp["cfg"], "folds": {**exp["cfg"]["folds"], "mode": "episode"}}
    with pytest.raises(ExportError, match="--force"):
        export(cfg)


def test_rows_load_through_swifts_own_dataset_loader(exp):
    from swift.dataset import load_dataset

    path = str(exp["tmp"] / "data" / "swift" / "user_1" / "fold_0" / "train.jsonl")
    train, _ = load_dataset([path], split_dataset_ratio=0.0)
    n = len((exp["tmp"] / "data" / "swift" / "user_1" / "fold_0" / "train.ids").read_text().splitlines())
    assert len(train) == n
    assert train[0]["messages"][1]["role"] == "assistant" and train[0]["images"]


def test_user_token_sets_are_the_union_of_each_users_pigg_folds(exp):
    """data/swift/user_tokens/<kind>/fold_F/train.jsonl = every test user's fold-F training samples (PIGG's
    exact folds), each prompt starting with its user's tag; the hold-outs are each user's fold-F test
    samples, tagged the same; pooled carries no tag and is otherwise the same file."""
    from data_prep.export import token_paths

    cfg = exp["cfg"]
    users, k = cfg["users"]["test"], cfg["folds"]["k"]
    for f in range(k):
        want = [i for u in users for i in swift_paths(cfg, u, f)["train"].with_suffix(".ids").read_text().splitlines()]
        rows = {}
        for kind, tag in (("special", "<user_{u}> "), ("text", "User {u}: "), ("pooled", "")):
            train = token_paths(cfg, kind, f)["train"]
            assert train.with_suffix(".ids").read_text().splitlines() == want
            rows[kind] = [json.loads(x) for x in train.read_text(encoding="utf-8").splitlines()]
            for u in users:
                test = token_paths(cfg, kind, f, u)["test"]
                assert test.with_suffix(".ids").read_text() == swift_paths(cfg, u, f)["test"].with_suffix(".ids").read_text()
                plain = [json.loads(x) for x in swift_paths(cfg, u, f)["test"].read_text(encoding="utf-8").splitlines()]
                tagged = [json.loads(x) for x in test.read_text(encoding="utf-8").splitlines()]
                for p, t in zip(plain, tagged):
                    assert t["messages"][0]["content"] == p["messages"][0]["content"].replace(
                        "<image>", "<image>" + tag.format(u=u), 1)
                    assert t["messages"][1] == p["messages"][1] and t["images"] == p["images"]
        starts = [r["messages"][0]["content"][len("<image>"):][:9] for r in rows["special"]]
        assert set(starts) == {f"<user_{u}> " for u in users}
        assert all(r["messages"][0]["content"].startswith("<image>Given") for r in rows["pooled"])
