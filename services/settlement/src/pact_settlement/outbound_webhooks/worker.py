"""The delivery worker: sends due outbox rows, signed, and records each outcome.

Each pass claims due pending deliveries in one short transaction (``FOR UPDATE SKIP LOCKED``
on Postgres, so replicas split the work) and leases them for twice ``WEBHOOK_TIMEOUT_S`` (each
send is cut off at ``WEBHOOK_TIMEOUT_S`` in all, so a live pass is done with it by then): a
process killed mid-send leaves its claim to expire, and the next pass (here or on another
replica) sends it again. Delivery is therefore at least once; receivers dedup by the event
``id`` (README "Outbound webhooks"). A 2xx answer marks the delivery ``delivered``; anything
else (another status, a timeout, a refused connection) schedules a retry after
``WEBHOOK_RETRY_BASE_S * 2**(attempts-1)`` (capped at an hour) with full jitter, until
``WEBHOOK_MAX_ATTEMPTS``, then ``failed`` (the replay route sends it again).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from pact_schema.clock import Clock
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pact_settlement.config import SettlementSettings
from pact_settlement.kit.time import session_now
from pact_settlement.outbound_webhooks.models import DeliveryStatus
from pact_settlement.outbound_webhooks.repository import (
    WebhookDeliveryRepository,
    WebhookEndpointRepository,
)
from pact_settlement.outbound_webhooks.signing import SIGNATURE_HEADER, sign

__all__ = ["WebhookDispatcher", "retry_delay_s"]

log = structlog.get_logger(__name__)

MAX_RETRY_DELAY_S = 3600.0


def retry_delay_s(base_s: float, attempts: int, rng: random.Random | None = None) -> float:
    """Pause after ``attempts`` failed tries: exponential, capped, jittered to [½, 1] of it
    so endpoints recovering from an outage are not hit by every retry at once."""
    ceiling = min(base_s * 2.0 ** min(max(attempts - 1, 0), 32), MAX_RETRY_DELAY_S)
    return ceiling * (rng or random).uniform(0.5, 1.0)


@dataclass(frozen=True)
class _Job:
    delivery_id: str
    event_id: str
    attempts: int
    url: str
    secret: str
    body: str


class WebhookDispatcher:
    name = "webhooks"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        settings: SettlementSettings,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock
        self.transport = transport  # tests: an in-process receiver

    @property
    def interval_s(self) -> float:
        return self.settings.webhook_interval_s

    async def run_once(self) -> int:
        """One pass; returns how many deliveries were attempted."""
        jobs = await self._claim()
        if not jobs:
            return 0
        timeout = httpx.Timeout(self.settings.webhook_timeout_s)
        async with httpx.AsyncClient(
            timeout=timeout, transport=self.transport, follow_redirects=False
        ) as http:
            results = await asyncio.gather(*(self._send(http, job) for job in jobs))
        for job, (status_code, error) in zip(jobs, results, strict=True):
            await self._record(job, status_code, error)
        return len(jobs)

    async def _claim(self) -> list[_Job]:
        async with self.sessionmaker() as session, session.begin():
            now = session_now(session)
            lease = timedelta(seconds=2 * self.settings.webhook_timeout_s)
            claimed = await WebhookDeliveryRepository.from_session(session).claim_due(
                now=now, lease_until=now + lease, limit=self.settings.worker_batch_size
            )
            endpoints = WebhookEndpointRepository.from_session(session)
            jobs = []
            for delivery in claimed:
                endpoint = await endpoints.get(delivery.endpoint_id)
                assert endpoint is not None  # a foreign key
                jobs.append(
                    _Job(
                        delivery.id,
                        delivery.event_id,
                        delivery.attempts,
                        endpoint.url,
                        endpoint.secret,
                        delivery.body,
                    )
                )
            return jobs

    async def _send(self, http: httpx.AsyncClient, job: _Job) -> tuple[int | None, str | None]:
        body = job.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "pact-settlement-webhooks/1",
            SIGNATURE_HEADER: sign(job.secret, self.clock() // 1000, body),
            "Pact-Event-Id": job.event_id,
        }
        try:
            # httpx times each read/write; this bounds the whole exchange (a trickling answer).
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                response = await http.post(job.url, content=body, headers=headers)
        except (httpx.HTTPError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    async def _record(self, job: _Job, status_code: int | None, error: str | None) -> None:
        async with self.sessionmaker() as session, session.begin():
            now = session_now(session)
            values: dict[str, object] = {
                "last_status_code": status_code,
                "last_error": error,
                "updated_at": now,
            }
            if error is None:
                values.update(status=DeliveryStatus.DELIVERED.value, delivered_at=now)
            elif job.attempts >= self.settings.webhook_max_attempts:
                values["status"] = DeliveryStatus.FAILED.value
            else:
                delay = retry_delay_s(self.settings.webhook_retry_base_s, job.attempts)
                values["next_attempt_at"] = now + timedelta(seconds=delay)
            recorded = await WebhookDeliveryRepository.from_session(session).settle(
                job.delivery_id, attempts=job.attempts, values=values
            )
        log.info(
            "webhooks.attempt",
            delivery_id=job.delivery_id,
            event_id=job.event_id,
            attempt=job.attempts,
            status_code=status_code,
            outcome=values.get("status", "retry"),
            error=error,
            recorded=recorded,
        )
