"""A mailbox provider that defers above a rate, for the SMTP sink (``SmtpSink(rule=...)``).

Like Gmail's "421 4.7.0 Try again later": the addresses of the given domains are accepted at
most ``per_second`` a second (a token bucket holding one second's worth); above that the
server answers 421 at RCPT. Other domains are never throttled.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

THROTTLE_REPLY = "421 4.7.0 Try again later, closing connection."


@dataclass
class ThrottleRule:
    domains: frozenset[str]
    per_second: float
    accepted: list[float] = field(default_factory=list)  # monotonic times of accepted RCPTs
    deferred: int = 0
    _tokens: float = -1.0
    _ts: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, address: str) -> str | None:
        if address.rpartition("@")[2].lower() not in self.domains:
            return None
        with self._lock:
            now = time.monotonic()
            if self._tokens < 0:
                self._tokens = self.per_second
            self._tokens = min(self.per_second, self._tokens + (now - self._ts) * self.per_second)
            self._ts = now
            if self._tokens >= 1:
                self._tokens -= 1
                self.accepted.append(now)
                return None
            self.deferred += 1
            return THROTTLE_REPLY

    def accepted_rate(self, *, last_seconds: float) -> float:
        """Accepted messages per second over the last ``last_seconds`` of acceptances."""
        with self._lock:
            if not self.accepted:
                return 0.0
            end = self.accepted[-1]
            recent = [t for t in self.accepted if t >= end - last_seconds]
        return len(recent) / last_seconds
