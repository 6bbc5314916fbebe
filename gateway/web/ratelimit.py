"""Per-credential rate limits: a token bucket per API key and per SMART client.

Vendors are counted per API key on every ingest and notification request; SMART clients (clinics,
researchers) per client id on every /fhir request that carries their access token, on enrolment
and lifecycle requests, and on `POST /auth/token` once their assertion is verified. One setting
pair (`rate_limit_per_second`, `rate_limit_burst`) applies to each credential separately.

Why a function the handlers call right after `authenticate(...)`, not a middleware: the bucket is
keyed by the credential, which exists only once the handler has authenticated the request, and the
check must come before the handler reads the body or touches a database. A middleware could only
look after the handler returned, when the work is done. Keying by the *verified* credential (not
the key id a client claims in its token) means nobody can drain another vendor's bucket by sending
its key id with a wrong secret.

Limits hold per process: behind N replicas a key gets N times the configured rate. The number of
buckets is bounded (least recently used evicted), so a flood of distinct credentials cannot grow
memory; an evicted bucket starts full again, which only ever errs towards admitting.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from gateway.errors import RateLimited
from gateway.logs import event
from gateway.web.appkeys import METRICS, RATE_LIMITS
from gateway.web.middleware import request_id

log = logging.getLogger("gateway.web")

MAX_BUCKETS = 100_000


class TokenBuckets:
    """Token buckets (`rate` tokens/s, at most `burst`) for up to `max_keys` keys.

    Each request takes one token; an empty bucket refuses and says how long until the next
    token. Buckets start full, so a new credential may send `burst` requests at once.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        # key -> (tokens, monotonic time they were counted); oldest use first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when admitted, else the seconds until one is available."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def throttle(request: web.Request, *, zone: str, credential_id: str) -> None:
    """Count one request against the credential's bucket; `RateLimited` (429) when it is empty.

    Call right after authentication, before reading the body. `credential_id` is an API key id
    (or a SMART client id): never a secret, never a subject identifier.
    """
    wait = request.app[RATE_LIMITS].take(f"{zone}/{credential_id}")
    if wait <= 0:
        return
    retry_after = max(1, math.ceil(wait))
    request.app[METRICS].throttled.labels(zone, "rate-limit").inc()
    event(
        log,
        "http.throttled",
        logging.WARNING,
        request_id=request_id(request),
        zone=zone,
        credential=credential_id,
        reason="rate-limit",
        retry_after=retry_after,
    )
    raise RateLimited(
        "too many requests with this credential; retry after the Retry-After seconds",
        retry_after=retry_after,
    )
