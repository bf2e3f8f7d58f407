"""OctoPrint's REST API polled while a benchmark runs: how quickly it still answers.

``GET /api/printer`` every 20 ms on a named thread (:class:`RestPoller`), each request's
start and duration kept; failed requests are counted, never hidden. :func:`p95` of the
durations inside the benchmark's windows is what the README reports.
"""

from __future__ import annotations

import time
from typing import List, Tuple

import requests
from harness import OctoPrintServer
from sampling import Sampler

INTERVAL = 0.02


class RestPoller(Sampler):
    """``with RestPoller(server) as poller:``: (start, seconds) per request in ``samples``."""

    def __init__(self, server: OctoPrintServer) -> None:
        super().__init__("bench-rest-poller", INTERVAL)
        self.server = server
        self.samples: List[Tuple[float, float]] = []
        self.errors: List[str] = []
        self._session = requests.Session()
        self._session.headers["X-Api-Key"] = server.admin_key
        self._url = f"{server.url}/api/printer?exclude=temperature,sd"

    def sample(self) -> None:
        started = time.monotonic()
        try:
            self._session.get(self._url, timeout=30).raise_for_status()
            self.samples.append((started, time.monotonic() - started))
        except requests.RequestException as exc:  # counted, never hidden
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def during(self, windows: List[Tuple[float, float]]) -> List[float]:
        """The durations of the requests that started inside one of the windows."""
        return [s for t, s in self.samples if any(a <= t <= b for a, b in windows)]


def p95(values: List[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
