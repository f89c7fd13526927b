"""The sending engine's types, shared by delivery.py (claims and runs) and batch.py
(one batch's outcomes) without either importing the other."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django_xconversions.claimed import Claimed

__all__ = ["Claim", "SendSummary"]


@dataclass(frozen=True)
class Claim:
    """Rows marked ``sending`` under one claim token."""

    token: uuid.UUID
    rows: list[Claimed]
    # A claim within the budget that the budget held short: when it allows more.
    wait_until: dt.datetime | None = None


@dataclass
class SendSummary:
    """What one ``send_pending`` call did; the command prints it."""

    sent: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    retrying: int = 0
    released: int = 0
    requests: int = 0
    rate_limited: dict[str, dt.datetime] = field(default_factory=dict)
    budget_exhausted: dict[str, dt.datetime] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)
    # Rows whose claim another worker took over before their outcome was written: the
    # outcome is not written (the row is theirs now). Non-zero means a lease ran out
    # under a live worker (its database unreachable for longer than a lease, say).
    lost_claims: int = 0
    pending_left: int = 0
    payloads: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: SendSummary) -> None:
        """Add another run's counts (the command's --loop keeps a running total)."""
        self.sent += other.sent
        self.failed.update(other.failed)
        self.retrying += other.retrying
        self.released += other.released
        self.requests += other.requests
        self.rate_limited.update(other.rate_limited)
        self.budget_exhausted.update(other.budget_exhausted)
        self.paused.update(other.paused)
        self.lost_claims += other.lost_claims
        self.pending_left = other.pending_left

    @property
    def processed(self) -> int:
        return self.sent + sum(self.failed.values()) + self.retrying

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": dict(self.failed),
            "retrying": self.retrying,
            "requests": self.requests,
            "rate_limited": {k: v.isoformat() for k, v in self.rate_limited.items()},
            "budget_exhausted": {k: v.isoformat() for k, v in self.budget_exhausted.items()},
            "paused": dict(self.paused),
            "lost_claims": self.lost_claims,
            "pending_left": self.pending_left,
        }
