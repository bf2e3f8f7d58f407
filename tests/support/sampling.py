"""A measurement taken again and again on a named thread while a test or benchmark runs.

    with RestPoller(server) as poller:   # a Sampler: sample() every `interval` seconds
        ...
    poller.samples

Subclasses implement :meth:`Sampler.sample`; it runs until the ``with`` block ends.
"""

from __future__ import annotations

import threading


class Sampler:
    """Calls :meth:`sample` every ``interval`` seconds on the thread ``name``."""

    def __init__(self, name: str, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)
