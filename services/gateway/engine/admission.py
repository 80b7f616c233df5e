"""Admission control: a new session is refused at its start when the model stages are at capacity,
so the sessions already admitted keep working. Capacity is read from what the stages measure and
report (GetLoad: slot use over a window, how late work starts), never from a session count set by
hand: one session's share of a stage's slot use is learnt from the load and the sessions open.

The shares are per gateway: with several replicas, each sees the stage's whole load over its own
sessions only, which overstates a share (errs towards refusing)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable

from services.common.errors import ResourceExhausted
from services.common.load import StageLoad
from services.gateway.config import AdmissionSettings
from services.gateway.engine.stages import StageError, Stages
from services.gateway.engine.vocabulary import Stage
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)
MODEL_STAGES = (Stage.VOXTRAL, Stage.TTS)
# Slot use below this says too little to divide among sessions.
MEASURABLE_UTILISATION = 0.05
# A session's share is averaged over this long: a conversation's load comes and goes with its turns.
SHARE_MEMORY_S = 30.0
# How long a model stage may take to answer its load probe before it counts as not answering.
PROBE_TIMEOUT_S = 2.0
# How often a stage that did not answer is asked again.
SILENT_POLL_S = 0.2
# Lateness refuses only while the stage is still loaded: at least this share of the utilisation
# limit busy, or work queued. Once the load is gone, what was late during it says nothing.
LOADED_SHARE = 0.5


class Refused(ResourceExhausted):
    """A session refused at start; `retry_after_s` is when trying again makes sense."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(f"{message}; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Admission:
    def __init__(self, settings: AdmissionSettings, stages: Stages, metrics: GatewayMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stages = stages
        self.clock = clock
        self.loads: dict[Stage, StageLoad] = {}
        self.shares: dict[Stage, float] = {}  # one session's share of the stage's slot use
        self._open: dict[int, float] = {}  # open sessions this gateway admitted: when
        self.silent: dict[Stage, str] = {}  # model stages that did not answer their last load probe: why
        self._spoke: dict[int, float] = {}  # ...of which these have spoken: since when
        self._tokens = itertools.count()

    def observe(self, stage: Stage, load: StageLoad, sessions: int) -> None:
        self.loads[stage] = load
        known = self.shares.get(stage)
        # A first share needs load enough to divide; once known it follows the load both ways.
        if sessions > 0 and (known is not None or load.utilisation >= MEASURABLE_UTILISATION):
            share = load.utilisation / sessions
            weight = 1 - math.exp(-self.settings.poll_s / SHARE_MEMORY_S)
            self.shares[stage] = share if known is None else (1 - weight) * known + weight * share

    async def poll(self, sessions: int) -> None:
        """Read every model stage's load once, together. A stage that does not answer (down, hung,
        too slow) cannot serve: sessions are refused until it answers again. One that answers it
        has no load report (UNIMPLEMENTED) is left out of the decision."""
        async def probe(stage: Stage) -> None:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    load = await self.stages.load(stage)
            except (StageError, TimeoutError) as err:
                self.loads.pop(stage, None)
                if isinstance(err, StageError) and err.code == "UNIMPLEMENTED":
                    self.silent.pop(stage, None)
                    return
                why = err.message if isinstance(err, StageError) else f"no answer in {PROBE_TIMEOUT_S:g} s"
                if stage not in self.silent:
                    log.warning("stage does not answer its load probe: new sessions are refused",
                                extra={"stage": stage.value, "error": why})
                self.silent[stage] = why
                return
            if self.silent.pop(stage, None) is not None:
                log.info("stage answers its load probe again", extra={"stage": stage.value})
            self.observe(stage, load, sessions)

        await asyncio.gather(*(probe(stage) for stage in MODEL_STAGES))

    async def run(self, sessions: Callable[[], int]) -> None:
        while True:
            await self.poll(sessions())
            # A stage that does not answer is asked again soon: it is refused on only while it is silent.
            await asyncio.sleep(min(self.settings.poll_s, SILENT_POLL_S) if self.silent else self.settings.poll_s)

    def _window_s(self) -> float:
        return max((load.window_s for load in self.loads.values()), default=10.0)

    def _pending(self) -> float:
        """Open sessions admitted recently, weighted by how much of their load the stages' averages
        lack: one that has spoken by the share e^(-t/window) its average has not seen, t since it first
        spoke; one that has not spoken yet wholly, for the unspoken grace. Later, one that never spoke
        is left out: idle sessions must not lock others out."""
        now, window, grace = self.clock(), self._window_s(), self.settings.unspoken_grace_s
        return sum(math.exp(-(now - self._spoke[t]) / window) if t in self._spoke else 1.0
                   for t, at in self._open.items() if t in self._spoke or now - at < grace)

    def _unspoken(self) -> int:
        """Sessions admitted within the grace that have not spoken yet: about to load the stages."""
        now, grace = self.clock(), self.settings.unspoken_grace_s
        return sum(1 for t, at in self._open.items() if t not in self._spoke and now - at < grace)

    def check(self, sessions: int) -> None:
        """Raise Refused when one more session does not fit; `sessions`: those open that load the
        stages (have spoken lately)."""
        if not self.settings.enabled:
            return
        retry = max(1, math.ceil(self._window_s() / 2))
        for stage, why in self.silent.items():
            self._refuse(f"the {stage} stage does not answer ({why}): it cannot serve a session now", retry,
                         stage, "stage_silent")
        sessions += self._unspoken()
        empty = sessions == 0  # an idle gateway admits one session on any share: it is how shares are learnt
        pending = self._pending()
        for stage, load in self.loads.items():
            loaded = load.queued > 0 or load.utilisation >= LOADED_SHARE * self.settings.max_utilisation
            if load.late_p95_ms > self.settings.max_late_ms and loaded:
                self._refuse(f"at capacity: {stage} starts work {load.late_p95_ms:.0f} ms past when it is needed "
                             f"(limit {self.settings.max_late_ms:.0f} ms)", retry, stage, "late")
            share = self.shares.get(stage)
            if share is None:
                if sessions >= self.settings.unmeasured_sessions:
                    self._refuse(f"at capacity until the load of a session is measured: {sessions} sessions open",
                                 retry, stage, "unmeasured")
                continue
            projected = load.utilisation + share * (1 + pending)
            if projected > self.settings.max_utilisation and not empty:
                self._refuse(f"at capacity: {stage} slots {load.utilisation:.0%} busy, one more session would "
                             f"make it {projected:.0%} (limit {self.settings.max_utilisation:.0%})", retry, stage,
                             "utilisation")

    def _refuse(self, message: str, retry_after_s: int, stage: Stage, reason: str) -> None:
        self.metrics.admissions.labels(result=f"refused_{reason}").inc()
        log.info("session refused", extra={"stage": stage.value, "reason": reason, "detail": message})
        raise Refused(message, retry_after_s)

    def admitted(self) -> int:
        """Count a session in; the token goes back to `left` when it ends."""
        self.metrics.admissions.labels(result="admitted").inc()
        token = next(self._tokens)
        self._open[token] = self.clock()
        return token

    def spoke(self, token: int) -> None:
        if token in self._open:
            self._spoke.setdefault(token, self.clock())

    def left(self, token: int) -> None:
        self._open.pop(token, None)
        self._spoke.pop(token, None)
