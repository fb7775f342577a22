"""The controls' data (data_prep/controls.py): in-context examples picked by instruction similarity, the rows they
make, and the data-efficiency curve's nested subsets. The controls run end to end in tests/test_demo.py."""
from __future__ import annotations

from data_prep.controls import curve_subset, in_context_row, similar
from data_prep.schema import Sample
from eval.profiles import PROFILES, user_text


def sample(i: int, instruction: str) -> Sample:
    return Sample(id=f"u/e/{i}", user=1, raw_user="u", episode="e", step=i, action="click", image=f"/img/{i}.png",
                  width=100, height=200, instruction=instruction, content=f"el{i}", x_px=10.0, y_px=20.0, x=100 + i, y=100)


def test_examples_are_the_most_similar_instructions_deterministically():
    pool = [sample(0, "打开微信扫一扫"), sample(1, "打开设置"), sample(2, "微信扫一扫付款"), sample(3, "搜索蓝牙耳机")]
    target = sample(9, "用微信扫一扫付款")
    assert [s.id for s in similar(target, pool, 2)] == ["u/e/2", "u/e/0"]  # bigram Jaccard, most similar first
    assert [s.id for s in similar(target, pool, 2)] == [s.id for s in similar(target, list(pool), 2)]
    tie = [sample(0, "abc"), sample(1, "abc")]
    assert [s.id for s in similar(sample(9, "abc"), tie, 1)] == ["u/e/0"]  # ties: the pool's order


def test_in_context_rows_hold_the_examples_as_earlier_turns_and_the_answer_last():
    ex = [sample(1, "a"), sample(2, "b")]
    target = sample(9, "c")
    point = lambda s: (s.x, s.y)  # noqa: E731
    img = in_context_row(target, ex, "image", "pigg", point)
    assert img["images"] == ["/img/2.png", "/img/1.png", "/img/9.png"]  # the most similar right before the sample
    assert [m["role"] for m in img["messages"]] == ["user", "assistant"] * 3
    assert img["messages"][1]["content"].endswith("```grounding\n[102, 100]\n```")
    assert img["messages"][-1]["content"].endswith("```grounding\n[109, 100]\n```")
    txt = in_context_row(target, ex, "text", "pigg", point)
    assert txt["images"] == ["/img/9.png"] and txt["messages"][0] == {"role": "user", "content": "b"}
    assert txt["messages"][1]["content"] == "```grounding\n[102, 100]\n```"
    sent = user_text(PROFILES["harness"], img, "c")
    assert sent == img["messages"][:-1] and sent[1]["role"] == "assistant"  # earlier answers stay, the target's goes


def test_curve_subsets_are_nested_seeded_draws():
    train = [sample(i, str(i)) for i in range(30)]
    small, large = curve_subset(train, 8, 42, 1, 0), curve_subset(train, 16, 42, 1, 0)
    assert large[:8] == small and len(set(s.id for s in large)) == 16
    assert curve_subset(train, 8, 42, 2, 0) != small  # another user's fold: another draw
    assert curve_subset(train, 99, 42, 1, 0) and len(curve_subset(train, 99, 42, 1, 0)) == 30
