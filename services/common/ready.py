"""A stage's engine as its servicer sees it: absent while the service warms up, then ready."""

from __future__ import annotations

from typing import Generic, TypeVar

from services.common.errors import Unavailable

T = TypeVar("T")


class Ready(Generic[T]):
    """Holds what warm-up builds; asking before then is UNAVAILABLE (health says NOT_SERVING meanwhile)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._value: T | None = None

    def set(self, value: T) -> None:
        self._value = value

    def get(self) -> T:
        if self._value is None:
            raise Unavailable(f"{self.what} is warming up: retry in a moment")
        return self._value

    @property
    def value(self) -> T | None:
        """What is held, if anything (for shutting down)."""
        return self._value
