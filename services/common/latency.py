"""The turn latency metric names (one set, used by events, Redis, Prometheus and reports)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

METRICS: tuple[str, ...] = (
    "endpoint_ms",
    "voxtral_ttft_ms",
    "first_clause_ms",
    "tts_ttfb_ms",
    "e2e_ms",
    "turn_ms",
    "overhead_ms",
    "first_audible_ms",
)


def check_metrics(values: Mapping[str, float]) -> dict[str, float]:
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
    return {
        name: (float(np.percentile(v, 50)), float(np.percentile(v, 95)), len(v))
        for name, v in columns.items()
        if v
    }


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), to 0.1; None for no values."""
    data = list(values)
    return round(float(np.percentile(data, q)), 1) if data else None
