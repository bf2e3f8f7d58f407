"""Integration-test harness: a real OctoPrint server with its Virtual Printer.

* :class:`harness.server.OctoPrintServer` starts/stops the server and wraps REST, the
  virtual printer and the recorder plugin's log of sent G-code lines.
* :class:`harness.events.EventListener` receives the push API (events, plugin messages).

Nothing in this package imports OctoPrint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from .events import EventListener, Message
from .server import (
    ADMIN,
    ALL_SERVERS,
    OPERATOR,
    READ_ONLY,
    VIEW_MANAGE,
    VIEW_ONLY,
    VIEWER,
    WEB_USERS,
    OctoPrintServer,
    UserInfo,
    free_port,
)

__all__ = [
    "ADMIN",
    "ALL_SERVERS",
    "OPERATOR",
    "READ_ONLY",
    "VIEWER",
    "VIEW_MANAGE",
    "VIEW_ONLY",
    "WEB_USERS",
    "EventListener",
    "Message",
    "OctoPrintServer",
    "UserInfo",
    "artifact_dir",
    "free_port",
    "item_failed",
    "names_the_plugin",
]


CHECKOUT = Path(__file__).resolve().parents[2]


def names_the_plugin(text: str, checkout: Path = CHECKOUT) -> bool:
    """Whether a log line names the plugin (its package, logger or hooks). The checkout's
    own path is taken out first: a fresh clone is called OctoPrint-LayerCapture, and every
    OctoPrint file in its .venv would name the plugin too."""
    return "layercapture" in text.replace(str(checkout), "<checkout>").lower()


def item_failed(item: object) -> bool:
    """True when the set-up or the call of a pytest item failed (needs the
    ``pytest_runtest_makereport`` hook of tests/conftest.py)."""
    return any(
        getattr(getattr(item, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )


def artifact_dir(root: Path, nodeid: str, server: Optional[str] = None) -> Path:
    """``root/test-artifacts/<test name>[/<server>]``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_")[:150]
    path = Path(root) / "test-artifacts" / name
    return path / server if server else path
