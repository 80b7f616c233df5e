"""Sentence and clause cutting, whole and streamed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.clauses import ClauseSplitter, split_clauses


def test_sentences_and_long_clauses() -> None:
    text = ("Hello there! It costs 3.50 dollars, Dr. Smith said. "
            "When the train finally arrives at the station, we will board it; then we rest.")
    assert split_clauses(text) == [
        "Hello there!",
        "It costs 3.50 dollars, Dr. Smith said.",
        "When the train finally arrives at the station,",
        "we will board it; then we rest.",
    ]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert split_clauses('He said "stop." Then he left.') == ['He said "stop."', "Then he left."]


def test_over_long_units_are_cut_at_words() -> None:
    text = " ".join(["word"] * 200)
    pieces = split_clauses(text, max_chars=50)
    assert all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces) == text


def test_streamed_first_clause_is_cut_early() -> None:
    splitter = ClauseSplitter(first_words=4)
    out = []
    for delta in ["Sure", " thing", " I", " can", " help", " with", " that", " today."]:
        out += splitter.push(delta)
    out += splitter.flush()
    assert out == ["Sure thing I can", "help with that today."]


def test_streamed_first_clause_cut_at_first_comma() -> None:
    splitter = ClauseSplitter()
    assert splitter.push("Well, ") == ["Well,"]
    assert splitter.push("that is a short one, but ") == []  # later clauses need min_clause_chars
    assert splitter.push("this is long enough to stand alone. ") == [
        "that is a short one, but this is long enough to stand alone."]


@given(st.text(alphabet=st.sampled_from(list("abc .,!?;'\"")), max_size=200),
       st.lists(st.integers(1, 7), min_size=1, max_size=60))
def test_streaming_loses_and_invents_nothing(text: str, cuts: list[int]) -> None:
    splitter = ClauseSplitter(first_words=3)
    out, pos, k = [], 0, 0
    while pos < len(text):
        step = cuts[k % len(cuts)]
        out += splitter.push(text[pos : pos + step])
        pos, k = pos + step, k + 1
    out += splitter.flush()
    assert "".join(out).replace(" ", "") == text.replace(" ", "")
    assert all(u == u.strip() and u for u in out)
