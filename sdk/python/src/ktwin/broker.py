"""Posting events to the broker ingress (``KTWIN_BROKER``) in binary mode, with a timeout per
attempt and bounded retries."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import httpx
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event

from ._http import bearer
from .errors import Unavailable


def to_binary(event: BaseCloudEvent) -> HTTPMessage:
    """``event`` as a binary-mode HTTP message: ``ce-*`` headers plus ``Content-Type``, the data
    as body."""
    return to_binary_event(event)


@dataclass(frozen=True)
class RetryPolicy:
    """How :class:`BrokerClient` retries."""

    attempts: int = 3
    """Attempts per event, at least 1."""
    first_backoff: float = 0.1
    """Seconds before the second attempt; doubled after each failure."""
    timeout: float = 5.0
    """Timeout of one attempt (seconds)."""


class BrokerClient:
    """Posts events to a CloudEvents broker ingress."""

    def __init__(
        self,
        url: str,
        retry: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        token: str | None = None,
    ) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self._client = client or httpx.AsyncClient(
            timeout=self.retry.timeout, headers=bearer(token)
        )

    async def aclose(self) -> None:
        """Closes the HTTP client."""
        await self._client.aclose()

    async def post(self, event: BaseCloudEvent) -> None:
        """Posts ``event``; any 2xx (the broker answers 202) is success. Transport errors, 5xx
        and 429 are retried with backoff; other statuses fail at once. Failure raises
        :class:`Unavailable` (the received event is then redelivered)."""
        message = to_binary(event)
        backoff = self.retry.first_backoff
        attempts = max(self.retry.attempts, 1)
        last_error = ""
        for attempt in range(1, attempts + 1):
            try:
                response = await self._client.post(
                    self.url, headers=message.headers, content=message.body
                )
            except httpx.HTTPError as err:
                last_error, retryable = repr(err), True
            else:
                if response.is_success:
                    return
                last_error = f"status {response.status_code}: {response.text[:200]}"
                retryable = response.status_code >= 500 or response.status_code == 429
            if not retryable or attempt == attempts:
                break
            await anyio.sleep(backoff)
            backoff *= 2
        raise Unavailable(f"broker {self.url} rejected event {event.get_id()}: {last_error}")
