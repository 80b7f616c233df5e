"""`make docs`: the benchmark tables in docs/benchmarks.md and the README's headline figures, written
from bench/results/ (never copied by hand). `--check` fails when a file is not what it would write.

docs/benchmarks.md and docs/operations.md mark each generated table with `<!-- results: NAME -->` ...
`<!-- /results -->`
(NAME: a bench/results/NAME.md file); README.md marks its headline table with `<!-- headline -->`
... `<!-- /headline -->`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BLOCK = re.compile(r"(?P<open><!-- results: (?P<name>[\w.-]+)(?P<summary> summary)? -->\n)"
                   r".*?(?P<close><!-- /results -->)", re.S)
HEADLINE = re.compile(r"(?P<open><!-- headline -->\n).*?(?P<close><!-- /headline -->)", re.S)
# Summary lines that say where and when, not what was measured.
CONTEXT_KEYS = ("date", "benchmark", "device")


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text())


def table_of(name: str, summary: bool = False) -> str:
    """The table of bench/results/NAME.md under the date it was measured (and, asked for, the
    summary lines above it)."""
    text = (RESULTS / f"{name}.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    if not rows:
        raise SystemExit(f"bench/results/{name}.md holds no table")
    date = re.search(r"^- date: (.+)$", text, re.M)
    when = f"Last run {date.group(1)}; " if date else ""
    out = f"_{when}raw: [`bench/results/{name}.json`](../bench/results/{name}.json)._\n\n"
    if summary:
        lines = [line for line in text.splitlines() if line.startswith("- ") and
                 line[2:].split(":")[0] not in CONTEXT_KEYS]
        out += "\n".join(lines) + "\n\n"
    return out + "\n".join(rows) + "\n"


def _default_detector(d: dict[str, Any]) -> str:
    row = next(r for r in d["detectors"] if "(default)" in r["name"])
    peer = next((r for r in d["detectors"] if r["name"].startswith("peer")), None)
    said = f"{row['end_delay_ms']['p50']:.0f} ms"
    return said + (f" (Pipecat's Smart Turn set-up: {peer['end_delay_ms']['p50']:.0f})" if peer else "")


def _mouth_to_ear(d: dict[str, Any]) -> str:
    m = d["mouth_to_ear_ms"]
    return f"{m['p50']:.0f} / {m['p95']:.0f} ms"


def _barge_in(d: dict[str, Any]) -> str:
    return f"{d['barge_in_stop_ms']['p95']:.0f} ms; false interruptions resumed {d['false_interruption_resumed']:.0%}"


def _capacity(d: dict[str, Any]) -> str:
    return f"{d['capacity_sessions']} ({d['sessions_per_core']} per core); beyond it refused at the door"


def _abuse(d: dict[str, Any]) -> str:
    return (f"{d['flood_rss_growth_mb']} / {d['realtime_flood_rss_growth_mb']} / {d['grpc_flood32_rss_growth_mb']} MB, "
            f"{d['grpc_flood32_rss_after_growth_mb']} MB after")


def _realtime(d: dict[str, Any]) -> str:
    return f"{d['ratio']:.2f} (Realtime {d['realtime_first_delta_after_speech_stopped_ms_p50']:.0f} ms)"


def _tts(d: dict[str, Any]) -> str:
    values = {r["measure"]: r["value"] for r in d["rows"]}
    return f"{values['first audio, service over gRPC (ms)']:.0f} ms; overhead {values['service overhead']}"


def _tools(d: dict[str, Any]) -> str:
    o = d["tool_round_trip_overhead_ms"]
    return f"{o['p50']:.0f} / {o['p95']:.0f} ms; filler after a 2 s tool {d['filler_first_audio_ms']['p50']:.0f} ms"


# (what, result file, how it reads, the command that measures it)
FIGURES: list[tuple[str, str, Callable[[dict[str, Any]], str], str]] = [
    ("end of turn after the speaker stops, p50", "endpointing", _default_detector, "make bench-endpoint"),
    ("mouth to ear, p50 / p95 (real recordings, one session)", "conversation", _mouth_to_ear,
     "make bench-conversation"),
    ("reply stopped after barge-in, p95", "conversation", _barge_in, "make bench-conversation"),
    ("conversations at capacity, one TTS slot", "capacity", _capacity, "make bench-capacity"),
    ("hostile floods (gRPC, Realtime, 32 sessions): gateway growth", "abuse", _abuse, "make bench-abuse"),
    ("Realtime first audio / gRPC e2e", "realtime_latency", _realtime, "make bench-realtime"),
    ("TTS first audio over gRPC, and vs a direct call", "tts_latency", _tts, "make bench-tts"),
    ("a tool call's round trip (instant tool) beyond the models' time, p50 / p95", "tools", _tools,
     "make bench-tools"),
]


def headline() -> str:
    rows = ["| what | last run | measured | benchmark |", "|---|---|---|---|"]
    for what, name, read, command in FIGURES:
        d = load(name)
        rows.append(f"| {what} | {read(d)} | {d['date'][:10]} | `{command}` |")
    return "\n".join(rows) + "\n"


def rewrite(path: Path, pattern: re.Pattern[str], body: Callable[[re.Match[str]], str]) -> tuple[str, str]:
    old = path.read_text()
    if not pattern.search(old):
        raise SystemExit(f"{path.relative_to(ROOT)} has no generated block ({pattern.pattern[:24]}...)")
    return old, pattern.sub(lambda m: m["open"] + body(m) + m["close"], old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file is stale")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    changes = {path: rewrite(path, BLOCK, lambda m: table_of(m["name"], bool(m["summary"])))
               for path in (ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "operations.md")}
    changes[readme] = rewrite(readme, HEADLINE, lambda m: headline())
    stale = [path for path, (old, new) in changes.items() if old != new]
    for path in stale:
        if args.check:
            print(f"{path.relative_to(ROOT)} is stale: run make docs", file=sys.stderr)
        else:
            path.write_text(changes[path][1])
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
