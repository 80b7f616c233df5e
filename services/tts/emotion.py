"""Emotional delivery (off by default, as the seed has it): voice and speed picked from the text.

The rule, in order: more negative than positive lexicon words -> "apologetic" (speed x0.9);
an exclamation mark or more positive than negative words -> "excited" (speed x1.1); a question
mark -> "curious" (speed x1.0); else "neutral" (speed x1.0). The voice changes only when a voice
is configured for that mood (TTS_MOOD_VOICES), so a reply keeps one speaker by default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.limits import SPEED

POSITIVE = frozenset({"great", "wonderful", "happy", "glad", "love", "excellent", "awesome", "amazing", "fantastic",
                      "congratulations", "delighted", "perfect", "yay", "brilliant", "thanks", "thank", "good"})
NEGATIVE = frozenset({"sorry", "sad", "unfortunately", "afraid", "problem", "fail", "failed", "bad", "terrible",
                      "apologize", "apologies", "regret", "wrong", "error", "cannot", "can't", "unable", "loss"})
MOOD_SPEED = {"apologetic": 0.9, "excited": 1.1, "curious": 1.0, "neutral": 1.0}


@dataclass(frozen=True)
class Delivery:
    mood: str
    voice: str
    speed: float


def mood_of(text: str) -> str:
    words = re.findall(r"[a-z']+", text.lower())
    positive = sum(w in POSITIVE for w in words)
    negative = sum(w in NEGATIVE for w in words)
    if negative > positive:
        return "apologetic"
    if "!" in text or positive > negative:
        return "excited"
    if "?" in text:
        return "curious"
    return "neutral"


def choose_delivery(text: str, voice: str, speed: float, mood_voices: Mapping[str, str]) -> Delivery:
    mood = mood_of(text)
    paced = min(SPEED.high, max(SPEED.low, speed * MOOD_SPEED[mood]))
    return Delivery(mood, mood_voices.get(mood, voice), round(paced, 3))
