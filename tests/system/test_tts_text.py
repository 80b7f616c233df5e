"""What the TTS makes of text before phonemes: digits read in groups, unspeakable characters dropped
and counted, and clauses cut into pieces the measured engine speed can synthesise in budget."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.tts.normalize import digit_groups, read_digits, speakable
from services.tts.pieces import MIN_PIECE_PHONEMES, Piece, PieceCost, first_piece, plan_pieces


def test_long_digit_strings_are_read_as_digits_in_groups() -> None:
    assert digit_groups("5551234567") == "5 5 5, 1 2 3, 4 5 6 7"
    assert read_digits("call 5551234567 now") == "call 5 5 5, 1 2 3, 4 5 6 7 now"
    assert read_digits("code 0042") == "code 0 0 4 2"
    three_hundred = "7" * 300
    spoken = read_digits(three_hundred)
    assert spoken.replace(",", "").split() == ["7"] * 300


def test_amounts_years_and_decimals_stay_numbers() -> None:
    text = "In 2024 it cost 450 dollars, or 12,500 in total, about 3.14159 each, page 100000."
    assert read_digits(text) == text


def test_characters_the_voice_cannot_speak_are_dropped_and_counted() -> None:
    before = REGISTRY.get_sample_value("voice_tts_dropped_characters_total", {"script": "ARABIC"}) or 0.0
    arabic = "مرحبا بك في المدينة"
    result = speakable(f"Hello {arabic} friend 😀!", "en-us")
    assert result.text == "Hello friend !"
    assert result.dropped["ARABIC"] == sum(c != " " for c in arabic)
    assert result.dropped["SYMBOL"] == 1
    after = REGISTRY.get_sample_value("voice_tts_dropped_characters_total", {"script": "ARABIC"})
    assert after == before + result.dropped["ARABIC"]


def test_latin_letters_with_accents_digits_and_punctuation_are_kept() -> None:
    text = "Café crème at 5 o'clock — naïve, déjà vu; 50% off & $3!"
    assert speakable(text, "en-gb").text == text
    assert speakable("日本語だけ", "en-us").text == ""


def test_the_piece_cost_is_fitted_as_fixed_plus_per_phoneme() -> None:
    cost = PieceCost()
    for n in (10, 50, 100, 200, 400):
        cost.observe(n, 500 + 30 * n)
    assert abs(cost.fixed_ms - 500) < 1 and abs(cost.per_phoneme_ms - 30) < 0.01
    assert cost.max_phonemes(1800, 510) == 43  # (1800 - 500) / 30
    assert cost.max_phonemes(100, 510) == MIN_PIECE_PHONEMES  # never below a word or two
    assert cost.max_phonemes(60_000, 256) == 256  # never above the ceiling


def test_one_kind_of_piece_alone_gives_a_cost_per_phoneme() -> None:
    cost = PieceCost()
    cost.observe(20, 900)
    assert cost.per_phoneme_ms == 45 and cost.fixed_ms == 0


def test_a_clause_is_cut_at_words_into_pieces_under_the_limit() -> None:
    def phonemize(text: str) -> str:
        return text.replace(" ", "")

    text = "one two three four five six seven eight nine ten, eleven twelve thirteen fourteen"
    pieces = plan_pieces(text, 24, phonemize, len)
    assert " ".join(p.text for p in pieces) == text
    assert all(p.count <= 24 for p in pieces) and len(pieces) > 1
    assert plan_pieces("word", 24, phonemize, len)[0].text == "word"
    long_word = plan_pieces("x" * 100, 24, phonemize, len)
    assert len(long_word) == 1 and long_word[0].count == 24  # one word over the limit is cut short
    assert plan_pieces("   ", 24, phonemize, len) == []


def test_a_clause_needed_soon_gives_its_first_words_alone() -> None:
    def phonemize(text: str) -> str:
        return text.replace(" ", "")

    def piece(text: str) -> Piece:
        return Piece(text, phonemize(text), len(phonemize(text)))

    text = "one two three four five six seven eight nine ten eleven twelve"
    head, rest = first_piece(piece(text), 20, phonemize, len) or (None, "")
    assert head is not None and head.count <= 20 and f"{head.text} {rest}" == text
    assert head.text == "one two three four five"  # the longest run of words that fits
    assert first_piece(piece(text), 200, phonemize, len) is None  # all of it fits: no cut
    assert first_piece(piece("extraordinarily long"), 5, phonemize, len) is None  # not even one word fits
    punctuated = "we all went out together, and then came home again"
    head, rest = first_piece(piece(punctuated), 26, phonemize, len) or (None, "")
    assert head is not None and head.text == "we all went out together," and rest.startswith("and")  # at the comma


def test_words_espeak_splits_are_phonemized_without_a_warning(caplog) -> None:
    """A token espeak reads as several words ("WiFi") is no mismatch for misaki's fallback: nothing
    is logged for it (it was a phonemizer WARNING on each such word)."""
    import logging

    from services.tts.phonemes import EnglishPhonemizer

    caplog.set_level(logging.WARNING)
    phonemizer = EnglishPhonemizer()
    for british in (False, True):
        assert phonemizer.phonemize("The WiFi is down.", british=british).count(" ") >= 4
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records
