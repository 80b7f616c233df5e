"""Sentence and clause cutting, whole and streamed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.clauses import DIGIT_LETTERS, LETTERS_PER_S, ClauseSplitter, speech_seconds, split_clauses


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


def stream(splitter: ClauseSplitter, text: str) -> list[str]:
    """The text word by word, as a model streams it."""
    out = [unit for word in text.split(" ") for unit in splitter.push(word + " ")]
    return out + splitter.flush()


def test_speech_length_is_estimated_from_letters_and_digits() -> None:
    assert speech_seconds("Hello there.") == pytest.approx(10 / LETTERS_PER_S)
    assert speech_seconds("Call 911") == pytest.approx((4 + 3 * DIGIT_LETTERS) / LETTERS_PER_S)
    assert speech_seconds("Hello there.", speed=2.0) == pytest.approx(speech_seconds("Hello there.") / 2)


def test_a_long_first_phrase_is_cut_by_how_long_it_takes_to_say() -> None:
    splitter = ClauseSplitter(first_words=6, first_clause_s=1.2)
    units = stream(splitter, "Extraordinarily complicated constitutional arrangements require patience")
    assert units[0] == "Extraordinarily"  # one long word is over the budget alone: it goes by itself
    text = "Computers perform very large numbers of calculations"
    first = stream(ClauseSplitter(first_words=6, first_clause_s=1.2), text)[0]
    one_more = text[: len(first) + 1 + len(text[len(first):].split()[0])]
    assert text.startswith(first) and speech_seconds(first) <= 1.2 < speech_seconds(one_more)


def test_later_clauses_grow_by_at_most_the_growth_factor() -> None:
    text = ("Computers perform a very large number of calculations to get the result and then they keep "
            "going on and on without a pause until somebody stops them")
    units = stream(ClauseSplitter(first_words=6, first_clause_s=1.2, growth=2.0), text)
    assert " ".join(units) == text
    lengths = [speech_seconds(u) for u in units]
    assert lengths[0] <= 1.2 and len(units) >= 3
    assert all(later <= 2.0 * max(earlier, 1.2) for earlier, later in zip(lengths, lengths[1:], strict=False))


@given(st.text(alphabet=st.sampled_from(list("abc .,!?;'\"")), max_size=200),
       st.lists(st.integers(1, 7), min_size=1, max_size=60), st.sampled_from([0.0, 0.3, 1.2]),
       st.sampled_from([0.0, 2.0]))
def test_streaming_loses_and_invents_nothing(text: str, cuts: list[int], first_s: float, growth: float) -> None:
    splitter = ClauseSplitter(first_words=3, first_clause_s=first_s, growth=growth)
    out, pos, k = [], 0, 0
    while pos < len(text):
        step = cuts[k % len(cuts)]
        out += splitter.push(text[pos : pos + step])
        pos, k = pos + step, k + 1
    out += splitter.flush()
    assert "".join(out).replace(" ", "") == text.replace(" ", "")
    assert all(u == u.strip() and u for u in out)
