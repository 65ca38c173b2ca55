"""Surface features of a prompt's question: what a router can read without a model."""

from __future__ import annotations

from thrifty.routing import shape


def named(text: str) -> dict[str, float]:
    return dict(zip(shape.NAMES, shape.extract(text), strict=True))


def test_multiple_choice_counts_its_options_and_worked_examples() -> None:
    demo = "Which gas do plants take in?\nA) oxygen\nB) carbon dioxide\nAnswer: B\n\n"
    f = named(demo * 3 + "Which planet is largest?\nA) Mars\nB) Jupiter\nC) Venus\nD) Earth\nAnswer:")
    assert f["options"] == 4 / 8 and f["examples"] == 3 / 10
    assert f["question_mark"] == 1.0 and f["wh_word"] == 1.0 and f["blank"] == 0.0


def test_code_maths_and_blanks_are_told_apart() -> None:
    code = named("Write a function.\ndef add(a, b):\n    return a + b\nassert add(1, 2) == 3")
    maths = named("Compute 12 * 7 + 3 = ? and then 81 / 9.")
    blank = named("The trophy does not fit in the suitcase because the _ is too big.")
    assert code["code"] > 0 and code["tests"] > 0 and maths["code"] == 0
    assert maths["digits"] > code["digits"] and maths["math"] > 0
    assert blank["blank"] == 1.0 and code["blank"] == 0.0


def test_every_feature_stays_in_unit_range_for_odd_input() -> None:
    for text in ("", "?", "x" * 100_000, "Что едят собаки?", "A) 1\n" * 50):
        values = shape.extract(text)
        assert len(values) == len(shape.NAMES)
        assert all(0.0 <= v <= 1.5 for v in values)
    assert shape.matrix(["a", "b?"]).shape == (2, len(shape.NAMES))
