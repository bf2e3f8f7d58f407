"""Listens to OctoPrint's push API (the SockJS raw websocket) from a test process.

Usage::

    listener = EventListener("http://127.0.0.1:5000", api_key).start()
    mark = listener.mark()
    ...  # make something happen
    msg = listener.wait_for_event("PrintDone", timeout=30, since=mark)
    listener.stop()

Every received ``event`` and ``plugin`` message is kept (with its monotonic receive
time) in a thread-safe list; waits block on a condition variable, never on fixed sleeps.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import requests
import websocket

logger = logging.getLogger(__name__)

# Message kinds the listener keeps; everything else (history, current, timelapse, ...)
# is only used for the handshake.
KEPT_KINDS = ("event", "plugin")
# The test recorder plugin (harness/recorder_plugin): its client_authed and barrier messages.
RECORDER_PLUGIN = "lc_test_recorder"


@dataclass(frozen=True)
class Message:
    """One push message: an OctoPrint event or a plugin message."""

    index: int  # position in the listener's list (use with ``since``)
    kind: str  # "event" or "plugin"
    name: str  # event type (e.g. "PrintDone") or plugin identifier (e.g. "layercapture")
    payload: Any  # event payload, or the plugin's ``data``
    t: float  # time.monotonic() when received

    def short(self) -> str:
        text = json.dumps(self.payload, default=str, sort_keys=True)
        if len(text) > 160:
            text = text[:157] + "..."
        return f"#{self.index} {self.kind}:{self.name} {text}"


Predicate = Callable[[Message], bool]


class EventListener:
    """Receives OctoPrint push messages on a daemon thread.

    ``base_url`` is the server's HTTP root (``http://127.0.0.1:PORT``), ``api_key`` a
    user's key, or None for an anonymous socket (never logged in).

    ``registered`` (the default) waits until OctoPrint registered the socket for events,
    which needs the Status permission. A user without it gets plugin messages only, and
    no message says its login went through: with ``registered=False`` the listener waits
    for the test recorder plugin's ``client_authed`` message naming the user instead
    (anonymous sockets: for OctoPrint's ``connected`` message).

    ``defer_login``: the socket opens without logging in (ready at ``connected``) until
    :meth:`log_in`, to see what OctoPrint holds back for a socket before its login.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str],
        *,
        name: str = "lc-event-listener",
        connect_timeout: float = 15.0,
        registered: bool = True,
        defer_login: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.name = name
        self.connect_timeout = connect_timeout
        self.wait_registered = registered and api_key is not None and not defer_login
        self.defer_login = defer_login
        self._session: Optional[str] = None
        self._logged_in = False
        self._cond = threading.Condition()
        self._messages: List[Message] = []
        self._ws: Optional[websocket.WebSocket] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._registered = False
        self._connected = False
        self._closed_reason: Optional[str] = None
        self.user: Optional[str] = None

    # ---- life cycle --------------------------------------------------------------------

    def start(self) -> EventListener:
        """Logs in (unless anonymous), opens the socket and returns once it is ready (see
        the class docstring)."""
        session = None
        if self.api_key is not None:
            login = requests.post(
                f"{self.base_url}/api/login",
                json={"passive": True},
                headers={"X-Api-Key": self.api_key},
                timeout=self.connect_timeout,
            )
            if login.status_code != 200:
                raise AssertionError(
                    f"passive login failed: HTTP {login.status_code} {login.text[:300]}"
                )
            info = login.json()
            self.user = str(info["name"])
            session = str(info["session"])

        ws_url = "ws" + self.base_url[len("http") :] + "/sockjs/websocket"
        ws = websocket.create_connection(ws_url, timeout=self.connect_timeout)
        ws.settimeout(None)
        self._ws = ws
        # Subscribe first: OctoPrint applies the filter when it registers the socket after
        # the auth message. All events and plugins; state pushes without their logs and
        # messages. Not "state": False: OctoPrint then never empties the socket's log
        # backlog (every terminal line, kept for ever: the soak's memory grew with it).
        subscribe = {"state": {"logs": False, "messages": False}, "plugins": True, "events": True}
        ws.send(json.dumps({"subscribe": subscribe}))
        self._session = session
        if session is not None and not self.defer_login:
            self._send_auth()

        self._thread = threading.Thread(target=self._run, name=f"{self.name}-recv", daemon=True)
        self._thread.start()
        mark = 0
        with self._cond:
            # OctoPrint's _register() subscribes the socket to all events and *then* pushes
            # the timelapse configuration on the same thread: that push means events now
            # arrive. Without registration, see the class docstring.
            ready = self._cond.wait_for(
                lambda: self._closed_reason is not None or self._ready(mark),
                timeout=self.connect_timeout,
            )
            ok = ready and self._closed_reason is None
        if not ok:
            reason = self._closed_reason or "not ready within the timeout"
            self.stop()
            raise AssertionError(f"push API listener could not register: {reason}")
        return self

    def _send_auth(self) -> None:
        assert self._ws is not None and self._session is not None
        self._ws.send(json.dumps({"auth": f"{self.user}:{self._session}"}))
        self._logged_in = True

    def log_in(self) -> None:
        """Logs a ``defer_login`` socket in; returns once OctoPrint has processed it."""
        mark = self.mark()
        self._send_auth()
        with self._cond:
            done = self._cond.wait_for(
                lambda: self._closed_reason is not None or self._ready(mark),
                timeout=self.connect_timeout,
            )
        if not done or self._closed_reason is not None:
            raise AssertionError(f"{self.name}: login not processed ({self._closed_reason})")

    def _ready(self, since: int) -> bool:
        """Called with the condition held."""
        if self.wait_registered:
            return self._registered
        if self.user is None or not self._logged_in:
            return self._connected
        return any(
            m.kind == "plugin"
            and m.name == RECORDER_PLUGIN
            and isinstance(m.payload, dict)
            and m.payload.get("type") == "client_authed"
            and m.payload.get("username") == self.user
            for m in self._messages[since:]
        )

    def stop(self) -> None:
        """Closes the socket and joins the receive thread (idempotent)."""
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            sock = ws.sock
            if sock is not None:
                try:  # wakes the blocked recv() in the receive thread
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            try:
                ws.shutdown()
            except Exception:
                logger.debug("websocket shutdown failed", exc_info=True)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._cond:
            if self._closed_reason is None:
                self._closed_reason = "stopped"
            self._cond.notify_all()

    def __enter__(self) -> EventListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- receiving ---------------------------------------------------------------------

    def _run(self) -> None:
        ws = self._ws
        assert ws is not None
        reason = "connection closed by the server"
        try:
            while not self._stopping.is_set():
                raw = ws.recv()
                received = time.monotonic()
                if raw is None or raw == "" or raw == b"":
                    if not ws.connected:
                        break
                    continue
                self._handle(raw, received)
        except (websocket.WebSocketConnectionClosedException, OSError) as exc:
            if not self._stopping.is_set():
                reason = f"connection lost: {exc!r}"
                logger.warning("%s: %s", self.name, reason)
        except Exception as exc:
            reason = f"receive loop crashed: {exc!r}"
            logger.exception("%s: receive loop crashed", self.name)
        finally:
            with self._cond:
                self._closed_reason = "stopped" if self._stopping.is_set() else reason
                self._cond.notify_all()

    def _handle(self, raw: Any, received: float) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            logger.warning("%s: not JSON: %r", self.name, raw[:200])
            return
        if not isinstance(data, dict):
            return
        for kind, body in data.items():
            if kind == "timelapse":
                with self._cond:
                    self._registered = True
                    self._cond.notify_all()
            elif kind == "connected":
                with self._cond:
                    self._connected = True
                    self._cond.notify_all()
            elif kind == "reauthRequired":
                logger.warning("%s: OctoPrint asks to re-authenticate: %r", self.name, body)
            elif kind in KEPT_KINDS and isinstance(body, dict):
                if kind == "event":
                    name, payload = str(body.get("type")), body.get("payload")
                else:
                    name, payload = str(body.get("plugin")), body.get("data")
                with self._cond:
                    self._messages.append(
                        Message(len(self._messages), kind, name, payload, received)
                    )
                    self._cond.notify_all()

    # ---- reading -----------------------------------------------------------------------

    def mark(self) -> int:
        """Index of the next message: pass as ``since`` to only look at later messages."""
        with self._cond:
            return len(self._messages)

    def messages(self, since: int = 0) -> List[Message]:
        with self._cond:
            return list(self._messages[since:])

    def events(self, name: Optional[str] = None, since: int = 0) -> List[Message]:
        return [
            m
            for m in self.messages(since)
            if m.kind == "event" and (name is None or m.name == name)
        ]

    def plugin_messages(self, plugin: Optional[str] = None, since: int = 0) -> List[Message]:
        return [
            m
            for m in self.messages(since)
            if m.kind == "plugin" and (plugin is None or m.name == plugin)
        ]

    def wait_for(
        self,
        predicate: Predicate,
        timeout: float,
        *,
        since: int = 0,
        description: str = "a matching message",
    ) -> Message:
        """Returns the first message at index >= ``since`` that satisfies ``predicate``.

        Blocks until one arrives; raises AssertionError (listing what was seen) after
        ``timeout`` seconds or when the connection is gone.
        """
        deadline = time.monotonic() + timeout
        checked = since
        with self._cond:
            while True:
                while checked < len(self._messages):
                    message = self._messages[checked]
                    checked += 1
                    if predicate(message):
                        return message
                if self._closed_reason is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            seen = self._messages[since:]
            closed = self._closed_reason
        raise AssertionError(self._describe_failure(description, timeout, seen, closed))

    def wait_for_event(
        self,
        name: str,
        timeout: float,
        predicate: Optional[Callable[[Any], bool]] = None,
        *,
        since: int = 0,
    ) -> Message:
        """Waits for event ``name`` whose payload satisfies ``predicate`` (if given)."""
        return self.wait_for(
            lambda m: (
                m.kind == "event"
                and m.name == name
                and (predicate is None or bool(predicate(m.payload)))
            ),
            timeout,
            since=since,
            description=f"event {name}" + (" matching the predicate" if predicate else ""),
        )

    def wait_for_events(
        self, name: str, count: int, timeout: float, *, since: int = 0
    ) -> List[Message]:
        """Waits until ``count`` events ``name`` arrived at index >= ``since`` (a plugin's
        custom event, one per captured layer); returns them. AssertionError otherwise."""
        found: List[Message] = []

        def enough(message: Message) -> bool:
            if message.kind == "event" and message.name == name:
                found.append(message)
            return len(found) >= count

        self.wait_for(enough, timeout, since=since, description=f"{count} events {name}")
        return found

    def wait_for_plugin_message(
        self,
        plugin: str,
        timeout: float,
        predicate: Optional[Callable[[Any], bool]] = None,
        *,
        since: int = 0,
    ) -> Message:
        """Waits for a plugin message from ``plugin`` whose data satisfies ``predicate``."""
        return self.wait_for(
            lambda m: (
                m.kind == "plugin"
                and m.name == plugin
                and (predicate is None or bool(predicate(m.payload)))
            ),
            timeout,
            since=since,
            description=f"plugin message from {plugin}"
            + (" matching the predicate" if predicate else ""),
        )

    @staticmethod
    def _describe_failure(
        description: str, timeout: float, seen: List[Message], closed: Optional[str]
    ) -> str:
        why = f"listener closed ({closed})" if closed else f"timeout after {timeout:g} s"
        tail = seen[-40:]
        lines = [f"waited for {description}: {why}; {len(seen)} message(s) seen since mark"]
        if len(seen) > len(tail):
            lines.append(f"  ... {len(seen) - len(tail)} earlier message(s) not shown")
        lines.extend("  " + m.short() for m in tail)
        return "\n".join(lines)
