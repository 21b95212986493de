"""The one error tree of the service.

Domain code raises these; each carries a stable machine-readable ``code`` in ``Resource.ErrorType`` form and a
category. The web layer maps categories to HTTP statuses in one place (``vault/api/errors.py``); the CLI prints
the code and message. Nothing else turns an error into a response.
"""

from __future__ import annotations

from typing import Any, ClassVar


class EvaultError(Exception):
    """Base of every expected failure. ``code`` is stable across versions: clients switch on it."""

    category: ClassVar[str] = "invalid"

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its code, message and details: evidence workers raise these across a pipe."""
        return (_rebuilt, (type(self), self.code, self.message, self.details))


def _rebuilt(kind: type[EvaultError], code: str, message: str, details: dict[str, Any]) -> EvaultError:
    """The same class, code, message and details (a subclass's own constructor is not called: the service
    answers from these alone)."""
    error = kind.__new__(kind)
    EvaultError.__init__(error, code, message, **details)
    return error


class InvalidInput(EvaultError):
    """The request is malformed or its content is unacceptable (400)."""

    category = "invalid"


class TooLarge(EvaultError):
    category = "too_large"


class TimedOut(EvaultError):
    """The client was too slow to send its request (408); the connection is closed."""

    category = "timed_out"


class Unauthenticated(EvaultError):
    category = "unauthenticated"


class Forbidden(EvaultError):
    category = "forbidden"


class NotFound(EvaultError):
    """Also what another organisation's resource looks like: a tenant cannot learn it exists."""

    category = "not_found"


class Conflict(EvaultError):
    """The resource's state does not allow the operation (409)."""

    category = "conflict"


class Gone(EvaultError):
    """The resource existed and is no more, for good (410): a signing link that expired or was used up."""

    category = "gone"


class PreconditionFailed(EvaultError):
    category = "precondition_failed"


class RateLimited(EvaultError):
    """Too many requests for the caller's quota in this window (429, with Retry-After)."""

    category = "rate_limited"


class Unavailable(EvaultError):
    """A dependency (object storage, database) failed; nothing was recorded as done (503)."""

    category = "unavailable"
