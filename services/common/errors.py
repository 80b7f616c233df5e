"""Errors a caller can act on, named by their status. No gRPC in here: the server's interceptor
maps a `Status` to the gRPC status code of the same name, the WebSocket to its error code."""

from __future__ import annotations

import asyncio
from enum import StrEnum

from google.protobuf.message import DecodeError


class Status(StrEnum):
    """The status vocabulary of the whole project (gRPC's names): what a service answers with,
    what a stage call failed with, and (through `client`) what a gateway client is told."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    CANCELLED = "CANCELLED"  # a stage call the stage (or its channel) cancelled
    UNKNOWN = "UNKNOWN"  # any other status name a stage answered with

    @classmethod
    def parse(cls, name: str) -> Status:
        return cls(name) if name in cls.__members__ else cls.UNKNOWN

    @property
    def client(self) -> Status:
        """What a gateway client is told (the proto's ErrorCode): a cancelled stage call was a
        stage going away; a status a client cannot act on is INTERNAL."""
        if self is Status.CANCELLED:
            return Status.UNAVAILABLE
        return Status.INTERNAL if self in (Status.UNIMPLEMENTED, Status.UNKNOWN) else self

    @property
    def wire(self) -> str:
        """The client's code on the wire (proto ErrorCode value name, WebSocket JSON)."""
        return f"ERROR_CODE_{self.client.value}"


class ServiceError(Exception):
    """An error with a status; the message is meant for the caller."""

    status: Status = Status.INTERNAL


class InvalidArgument(ServiceError):
    status = Status.INVALID_ARGUMENT


class ResourceExhausted(ServiceError):
    status = Status.RESOURCE_EXHAUSTED
    retry_after_s: int | None = None  # when trying again makes sense (gRPC trailer and HTTP header retry-after)


class DeadlineExceeded(ServiceError):
    status = Status.DEADLINE_EXCEEDED


class Unavailable(ServiceError):
    status = Status.UNAVAILABLE


class FailedPrecondition(ServiceError):
    status = Status.FAILED_PRECONDITION


class Unauthenticated(ServiceError):
    status = Status.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    status = Status.PERMISSION_DENIED


# How much of a caller's value an error message quotes: error texts travel in gRPC metadata,
# whose size is limited, and a huge echo would replace the real error with "Stream removed".
ECHO_CHARS = 64


def echo(value: str) -> str:
    """A caller's value as an error message quotes it: whole when short, else a prefix and its length."""
    return repr(value) if len(value) <= ECHO_CHARS else f"{value[:ECHO_CHARS]!r}... ({len(value)} characters)"


def unreadable(exc: BaseException) -> str:
    """What a caller is told when the bytes it sent are no message of the method's request type."""
    return f"the request could not be read: {echo(str(exc))}"


def status_for(exc: BaseException) -> tuple[Status, str]:
    """Map an exception to a status and message; never UNKNOWN."""
    if isinstance(exc, ServiceError):
        return exc.status, str(exc)
    if isinstance(exc, DecodeError):  # bytes that are no message of the method's request type
        return Status.INVALID_ARGUMENT, unreadable(exc)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Status.DEADLINE_EXCEEDED, str(exc) or "operation timed out"
    if isinstance(exc, MemoryError):
        return Status.RESOURCE_EXHAUSTED, "out of memory"
    if isinstance(exc, NotImplementedError):
        return Status.UNIMPLEMENTED, str(exc) or "not implemented"
    return Status.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


class StartupRefused(RuntimeError):
    """A service cannot start (a model file missing, say); the message says what to do."""
