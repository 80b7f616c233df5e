"""The turn latency metric names (one set, used by events, Redis, Prometheus and reports)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

import numpy as np


class Metric(StrEnum):
    """A turn's latency figures, in ms (docs/api.md: "Latency metrics" says what each measures)."""

    ENDPOINT = "endpoint_ms"
    VOXTRAL_TTFT = "voxtral_ttft_ms"
    FIRST_CLAUSE = "first_clause_ms"
    TTS_TTFB = "tts_ttfb_ms"
    E2E = "e2e_ms"
    TURN = "turn_ms"
    OVERHEAD = "overhead_ms"
    FIRST_AUDIBLE = "first_audible_ms"


METRICS: tuple[str, ...] = tuple(m.value for m in Metric)


def by_name(metrics: Mapping[Metric, float]) -> dict[str, float]:
    """Metrics keyed by their plain names (a proto's fields, a log line, a JSON object)."""
    return {m.value: v for m, v in metrics.items()}


def check_metrics(values: Mapping[str, float]) -> dict[str, float]:
    """`values` by their plain names, refused when one is not a Metric."""
    unknown = set(values) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metric names {sorted(unknown)}; known: {', '.join(METRICS)}")
    return {name: float(values[name]) for name in METRICS if name in values}


def summarize(records: Iterable[Mapping[str, float | str]]) -> dict[str, tuple[float, float, int]]:
    """p50, p95 and sample count per metric over turn records (linear interpolation)."""
    columns: dict[str, list[float]] = {name: [] for name in METRICS}
    for record in records:
        for name in METRICS:
            if name in record:
                columns[name].append(float(record[name]))
    return {name: (quantile(v, 50), quantile(v, 95), len(v)) for name, v in columns.items() if v}


def percentile(values: Iterable[float], q: float, digits: int | None = 1) -> float | None:
    """The q-th percentile (linear interpolation), rounded to `digits` (None: not rounded); None for
    no values. The one percentile of the project: reports, benchmarks and the store's summaries."""
    data = list(values)
    if not data:
        return None
    value = float(np.percentile(data, q))
    return value if digits is None else round(value, digits)


def quantile(values: Iterable[float], q: float) -> float:
    """The q-th percentile, not rounded, of values that must be there."""
    found = percentile(values, q, digits=None)
    if found is None:
        raise ValueError("a percentile of no values")
    return found


def median(values: Iterable[float]) -> float:
    return quantile(values, 50)
