"""Every named error of kpay, each mapped to one error code and HTTP status.

Handlers raise these; the base handler turns them into the error envelope
``{"error": {"code", "message", ...details}}``. Socket replies use the same code.
"""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """Settings are missing, unknown or invalid: start-up stops with this message."""


class PluginError(Exception):
    """A plugin could not be found, loaded or registered."""


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.details = details

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class TooManyOpen(Conflict):
    """A cap on open things per user is reached (pending orders, open consultation
    requests, open rooms, draft courses): one must be finished before another starts.
    ``what`` names the cap, ``limit`` its value."""

    status, code = 409, "too_many_open"

    def __init__(self, message: str, *, what: str, limit: int) -> None:
        super().__init__(message, what=what, limit=limit)


class RateLimited(ApiError):
    """Too many requests; ``retry_after`` (whole seconds, at least 1), when given, is
    also sent as the ``Retry-After`` header."""

    status, code = 429, "rate_limited"


class InsufficientBalance(ApiError):
    """The wallet cannot pay; ``needed`` is the shortfall-free amount asked for, in fen."""

    status, code = 402, "insufficient_balance"

    def __init__(self, needed: int, balance: int, message: str = "") -> None:
        super().__init__(
            message or f"wallet balance {balance} fen cannot pay {needed} fen",
            needed=needed,
            balance=balance,
        )


class PaymentProviderError(ApiError):
    """The payment provider refused or failed; nothing was charged."""

    status, code = 502, "payment_provider_error"
