"""API keys, their roles, and per-key rate limits.

Keys come from ``--api-key KEY`` or an ``--api-keys FILE``: one key a line, optionally followed by a
name, a per-key limit in requests per minute and a role (``sk-abc  alice  120  reviewer``; the limit may
be left out: ``sk-abc  bob  admin``); ``#`` starts a comment.

Roles, each allowed what the one before it is:

- ``user``: chat, the knowledge base, ChatFile, ratings and comments (the default for a key in a file);
- ``reviewer``: also corrections and pairwise choices, which become training data, and feedback export;
- ``admin``: also ``/metrics``, promotion and rollback. A single ``--api-key`` is the operator's: admin.

The limiter is a token bucket per key, written by hand because it is ten lines and needs no shared store
(one server process; behind several replicas, put the limit in the proxy in front instead).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from domainlm.errors import DomainlmError

ROLES = ("user", "reviewer", "admin")


@dataclass(frozen=True)
class ApiKey:
    key: str
    name: str
    rate_per_minute: float | None = None  # None: the server's default
    role: str = "user"

    def can(self, role: str) -> bool:
        """Whether this key holds ``role`` or a role above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def parse_api_keys(path: str | Path) -> list[ApiKey]:
    """Read an API-key file; a malformed line is an error naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DomainlmError(f"{path}: API key file not found") from None
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        role = "user"
        if len(fields) > 2 and fields[-1] in ROLES:
            role = fields.pop()
        elif len(fields) > 2 and not _is_number(fields[-1]):
            raise DomainlmError(f"{path}:{number}: '{fields[-1]}' is neither a rate (requests per minute) nor a role "
                                f"({', '.join(ROLES)})")
        if len(fields) > 3:
            raise DomainlmError(f"{path}:{number}: expected 'KEY [NAME] [REQUESTS_PER_MINUTE] [ROLE]'")
        key = fields[0]
        if len(key) < 8:
            raise DomainlmError(f"{path}:{number}: API key is shorter than 8 characters")
        if key in seen:
            raise DomainlmError(f"{path}:{number}: duplicate API key")
        rate = None
        if len(fields) == 3:
            try:
                rate = float(fields[2])
            except ValueError:
                raise DomainlmError(f"{path}:{number}: rate '{fields[2]}' is not a number") from None
            if rate <= 0:
                raise DomainlmError(f"{path}:{number}: rate must be > 0")
        seen.add(key)
        keys.append(ApiKey(key=key, name=fields[1] if len(fields) > 1 else f"key{len(keys) + 1}", rate_per_minute=rate,
                           role=role))
    if not keys:
        raise DomainlmError(f"{path}: no API keys in the file")
    return keys


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class RateLimiter:
    """Token bucket per key: ``rate`` requests per minute, bursts up to one minute's worth."""

    def __init__(self, default_per_minute: float):
        self.default = default_per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, key: str, per_minute: float | None = None) -> float:
        """0.0 when the request may proceed, else the seconds to wait before retrying."""
        rate = per_minute or self.default
        if rate <= 0:
            return 0.0
        capacity = max(1.0, rate)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate / 60.0)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) * 60.0 / rate
