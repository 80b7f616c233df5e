"""Why a session ends, or never starts, on account of its client."""

from __future__ import annotations

from services.common.errors import DeadlineExceeded, ResourceExhausted


class Idle(DeadlineExceeded):
    """The client sent nothing for the idle timeout."""


class Stalled(DeadlineExceeded):
    """The client read nothing for the write timeout."""


class ClientLimit(ResourceExhausted):
    """One client holds its maximum of sessions."""


__all__ = ["ClientLimit", "Idle", "Stalled"]
