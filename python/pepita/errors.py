"""pepita's exceptions: one class per pepita::Error code, under PepitaError.

Each also derives from the builtin a Python caller would catch for that kind of failure
(InvalidArgumentError is a ValueError, TimedOutError a TimeoutError, ...). The message is the
C++ error's, intact: what went wrong and what to do about it.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Optional


class PepitaError(Exception):
    """Base of every pepita error. `code` is pepita's name for it ("invalid-argument")."""

    code = "internal"

    def __init__(self, message: str = "", errno: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(PepitaError, ValueError):
    code = "invalid-argument"


class NotFoundError(PepitaError, LookupError):
    code = "not-found"


class AlreadyExistsError(PepitaError):
    code = "already-exists"


class PermissionDeniedError(PepitaError, PermissionError):
    code = "permission-denied"


class UnsupportedError(PepitaError, NotImplementedError):
    code = "unsupported"


class ResourceExhaustedError(PepitaError):
    code = "resource-exhausted"


class BusyError(PepitaError):
    code = "busy"


class TimedOutError(PepitaError, TimeoutError):
    code = "timed-out"


class CancelledError(PepitaError, concurrent.futures.CancelledError):
    code = "cancelled"


class DisconnectedError(PepitaError, ConnectionError):
    code = "disconnected"


class ProtocolError(PepitaError):
    code = "protocol"


class CorruptedError(PepitaError):
    code = "corrupted"


class TaskFailedError(PepitaError):
    """A task ran (or could not start) and did not succeed. `result` is its TaskResult."""

    code = "task-failed"

    def __init__(self, message: str = "", result: Optional[Any] = None) -> None:
        super().__init__(message)
        self.result = result


class TaskTimedOutError(TaskFailedError, TimeoutError):
    """A task ran past its timeout and was stopped."""

    code = "task-timed-out"


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        UnsupportedError,
        ResourceExhaustedError,
        BusyError,
        TimedOutError,
        CancelledError,
        DisconnectedError,
        ProtocolError,
        CorruptedError,
    )
}


def _from_code(code: str, message: str, errno: int = 0) -> PepitaError:
    """The exception for a pepita::Error (called by the extension)."""
    cls = _BY_CODE.get(code, PepitaError)
    exc = cls(message, errno)
    if cls is PepitaError:
        exc.code = code
    return exc


__all__ = [
    "PepitaError",
    "InvalidArgumentError",
    "NotFoundError",
    "AlreadyExistsError",
    "PermissionDeniedError",
    "UnsupportedError",
    "ResourceExhaustedError",
    "BusyError",
    "TimedOutError",
    "CancelledError",
    "DisconnectedError",
    "ProtocolError",
    "CorruptedError",
    "TaskFailedError",
    "TaskTimedOutError",
]
