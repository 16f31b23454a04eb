"""The ``[consult_billing]`` settings section."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from kpay.core.config import Section


class ConsultBillingSettings(Section):
    """Every key of ``[consult_billing]``; unknown keys stop start-up (extra="forbid")."""

    # An absence shorter than this is billed as if both were present (a reconnect).
    grace_seconds: float = Field(30.0, ge=0, le=3600)
    # A session whose party has been away this long ends (reason "absent").
    absence_end_seconds: float = Field(300.0, gt=0, le=24 * 3600)
    # low_balance is sent when the wallet covers this many minutes or fewer.
    low_balance_minutes: int = Field(3, ge=0, le=1000)
    # An unanswered request ends (reason "expired") after this long; nothing is charged.
    request_timeout_seconds: float = Field(120.0, gt=0, le=24 * 3600)
    # How often the billing engine sweeps for due sessions.
    engine_interval_seconds: float = Field(2.0, gt=0, le=60)
    # How many sessions' minutes one engine transaction charges together.
    engine_batch_size: int = Field(200, ge=1, le=5000)
    # How many sessions the engine settles one by one at the same time (state changes,
    # and minutes a batch could not take).
    engine_concurrency: int = Field(16, ge=1, le=1000)
    # A node process not heard from for this long is taken as gone: the sockets it had
    # are forgotten (a party with none left anywhere is absent). See nodes.py.
    node_timeout_seconds: float = Field(60.0, ge=5, le=3600)
    # Bounds for consultant profiles (fen per minute; minutes per session).
    max_rate_per_minute: int = Field(100_000, gt=0)
    max_minutes_per_session: int = Field(600, gt=0, le=24 * 60)
    # Requests not yet answered (and not expired) a student may have open at once, and
    # a consultant may have waiting; one more is 409 too_many_open. 0: no cap.
    max_open_requests_per_student: int = Field(3, ge=0)
    max_waiting_requests_per_consultant: int = Field(50, ge=0)

    @model_validator(mode="after")
    def absence_outlasts_grace(self) -> ConsultBillingSettings:
        if self.absence_end_seconds <= self.grace_seconds:
            raise ValueError("absence_end_seconds must be longer than grace_seconds")
        return self


SECTION = "consult_billing"


def settings_of(app: Any) -> ConsultBillingSettings:
    return app.settings.section(SECTION)
