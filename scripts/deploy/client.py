"""The api-server's public REST API over HTTP (httpx): one request, its JSON, its errors.

A request that times out or cannot connect is a :class:`TransientError`: the caller retries it
until its :class:`Deadline`; an HTTP error status is an :class:`ApiError` and is not retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

REQUEST_TIMEOUT = 10.0
"""Seconds one request may take; a slower answer is retried until the caller's deadline."""


class ApiError(Exception):
    """The api-server answered with an error status (``status``), or not with JSON."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientError(ApiError):
    """No answer: the request timed out or could not connect. Worth retrying."""


class WaitTimeout(TimeoutError):
    """A wait's deadline passed; the message names what did not happen."""


@dataclass(frozen=True)
class Deadline:
    """An overall time limit, ``seconds`` from its creation (monotonic clock)."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def passed(self) -> bool:
        return self.remaining() <= 0


class Api:
    """A JSON client for the api-server: ``base_url`` is e.g. ``http://127.0.0.1:8080``."""

    def __init__(self, base_url: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token: str | None = None
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; its JSON answer (``None`` when empty). Raises :class:`TransientError` when
        there is no answer in ``timeout`` seconds or no connection, :class:`ApiError` on an error
        status."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self._client.request(method, path, json=body, headers=headers)
        except httpx.TimeoutException:
            raise TransientError(f"{method} {path}: timed out after {self.timeout:g} s") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
            raise TransientError(f"{method} {path}: {error or type(error).__name__}") from None
        if response.is_error:
            detail = response.text[:500]
            raise ApiError(f"{method} {path}: HTTP {response.status_code} {detail}", response.status_code)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{method} {path}: not JSON: {response.text[:200]!r}") from None
