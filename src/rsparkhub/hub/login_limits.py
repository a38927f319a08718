"""How many password logins may fail, per account and per client address, before the hub
refuses more for a while (429 ``too_many_attempts`` with ``Retry-After``).

An attempt takes its place *before* the password is checked, so a burst of concurrent
guesses is limited as well as a slow series; a successful login gives its place back and
clears the account's failures. Account names are counted whether or not the account
exists, so the answer never tells which names do. The counts live in the hub's memory
(a restart forgets them; with several hub replicas each counts its own) and are bounded:
expired entries are dropped as the table grows.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from rsparkhub.hub.errors import ApiError

_MAX_KEYS = 100_000


class LoginLimiter:
    def __init__(
        self,
        per_account: int,
        per_address: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_account = per_account
        self.per_address = per_address
        self.window_s = window_s
        self._clock = clock
        self._attempts: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._attempts.get(key)
        if q is None:
            q = self._attempts[key] = deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def _prune(self, now: float) -> None:
        if len(self._attempts) < _MAX_KEYS:
            return
        for key in [k for k, q in self._attempts.items() if not q or q[-1] <= now - self.window_s]:
            del self._attempts[key]
        while len(self._attempts) >= _MAX_KEYS:  # still full of live entries: oldest first
            del self._attempts[next(iter(self._attempts))]

    def begin(self, account: str, address: str) -> None:
        """Take a place for one login attempt, or raise 429 ``too_many_attempts``."""
        now = self._clock()
        self._prune(now)
        checks = (
            (("account", account.lower()), self.per_account, "for this account"),
            (("address", address), self.per_address, "from your network address"),
        )
        queues = []
        for key, limit, where in checks:
            q = self._recent(key, now)
            if len(q) >= limit:
                wait = max(1, math.ceil(q[0] + self.window_s - now))
                raise ApiError(
                    429,
                    "too_many_attempts",
                    f"Too many failed logins {where}. Try again in {wait} seconds, or ask "
                    "an administrator for a new login link if you forgot your password.",
                    headers={"Retry-After": str(wait)},
                    retry_after=wait,
                )
            queues.append(q)
        for q in queues:
            q.append(now)

    def succeeded(self, account: str, address: str) -> None:
        """The password was right: the account's failures are forgiven, and the address
        gets back the place this attempt took."""
        self._attempts.pop(("account", account.lower()), None)
        q = self._attempts.get(("address", address))
        if q:
            q.pop()
