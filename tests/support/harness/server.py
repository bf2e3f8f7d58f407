"""Starts a real OctoPrint server (the pip package) with its Virtual Printer for tests.

    server = OctoPrintServer(tmp_path / "octoprint").start()
    server.connect()                       # virtual printer, waits for "Operational"
    server.start_print(gcode_path)         # upload + select + print
    server.wait_print_done(timeout=60)     # PrintDone over the push API
    lines = server.sent_lines()            # what the printer was sent (recorder plugin)
    server.stop()

Nothing here imports OctoPrint: the server runs in a subprocess of this venv's Python.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import requests
import yaml

from .events import EventListener, Message

HOST = "127.0.0.1"
RECORDER_SOURCE = Path(__file__).resolve().parent / "recorder_plugin" / "lc_test_recorder.py"
FIRMWARE_SOURCE = Path(__file__).resolve().parent / "firmware_plugin" / "lc_test_firmware.py"
SLOW_START_SOURCE = Path(__file__).resolve().parent / "slow_start_plugin" / "aaa_lc_slow_start.py"
RECORDER_FILE = "lc_sent.jsonl"
OUTPUT_FILE = "octoprint.out"
AFTER_STARTUP_LINE = "lc_test_recorder: on_after_startup done"  # as in the recorder plugin
STARTUP_TIMEOUT = 60.0

ADMIN = "admin"
VIEWER = "viewer"  # an Operator: OctoPrint's "users" group, no Layer Capture permission
PASSWORDS = {ADMIN: "lc-admin-pass", VIEWER: "lc-viewer-pass"}

# The kinds of user the web tests run as, besides ADMIN and anonymous (None): name ->
# (OctoPrint groups, extra permissions). Create them with OctoPrintServer.add_web_users().
OPERATOR = "operator"
READ_ONLY = "readonly"
VIEW_ONLY = "viewonly"
VIEW_MANAGE = "viewmanage"
VIEW_PERMISSION = "PLUGIN_LAYERCAPTURE_VIEW"
MANAGE_PERMISSION = "PLUGIN_LAYERCAPTURE_MANAGE"
WEB_USERS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    OPERATOR: (("users",), ()),
    READ_ONLY: (("readonly",), ()),
    VIEW_ONLY: ((), (VIEW_PERMISSION,)),
    VIEW_MANAGE: ((), (VIEW_PERMISSION, MANAGE_PERMISSION)),
}

DISABLED_PLUGINS = [
    "softwareupdate",
    "announcements",
    "tracking",
    "errortracking",
    "discovery",
    "pluginmanager",
    "achievements",
    "health_check",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - ")

# Every server that was started in this process, in start order (diagnostics use it).
ALL_SERVERS: List[OctoPrintServer] = []


@dataclass(frozen=True)
class UserInfo:
    name: str
    password: str
    api_key: str
    admin: bool
    groups: Tuple[str, ...] = ()
    permissions: Tuple[str, ...] = ()  # besides those of the groups


StatePredicate = Union[str, Callable[[str], bool]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def deep_merge(base: Dict[str, Any], override: Mapping[str, Any]) -> Dict[str, Any]:
    """Recursively merges ``override`` into a copy of ``base`` (dicts merge, rest replaces)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@functools.cache
def password_hash(password: str) -> str:
    """A hash OctoPrint 1.11 accepts in users.yaml (argon2, else pbkdf2-sha256)."""
    try:
        from libpass.hash import argon2, pbkdf2_sha256  # type: ignore[import-not-found]
    except ImportError:
        from passlib.hash import argon2, pbkdf2_sha256  # type: ignore[import-untyped]
    try:
        return str(argon2.hash(password))
    except Exception:
        return str(pbkdf2_sha256.hash(password))


def base_config(*, pluginmanager: bool = False) -> Dict[str, Any]:
    """config.yaml for a quiet, offline start with the virtual printer enabled."""
    disabled = [p for p in DISABLED_PLUGINS if pluginmanager is False or p != "pluginmanager"]
    config: Dict[str, Any] = {
        "server": {
            "firstRun": False,
            "onlineCheck": {"enabled": False},
            "pluginBlacklist": {"enabled": False},
            "pythonEolCheck": {"enabled": False},
            "seenWizards": {"corewizard": 4, "tracking": 1, "backup": 1, "file_check": 1},
        },
        "plugins": {
            "_disabled": disabled,
            "virtual_printer": {"enabled": True},
            "tracking": {"enabled": False},
            # keeps the start-up webcam migration from touching the classic webcam
            "classicwebcam": {"_config_version": 1},
        },
    }
    if pluginmanager:
        # never reach plugins.octoprint.org: prepare() seeds the caches, and a forced
        # refresh hits a closed local port
        config["plugins"]["pluginmanager"] = {
            "repository": f"http://{HOST}:9/plugins.json",
            "notices": f"http://{HOST}:9/notices.json",
        }
    return config


def _load_libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)  # loaded here, not in the forked child
    except OSError:
        return None


_LIBC = _load_libc() if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when the test process dies (no orphans)."""
    if _LIBC is not None:
        _LIBC.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


class OctoPrintServer:
    """One OctoPrint process on 127.0.0.1 with its own basedir.

    ``config_overrides`` are deep-merged into config.yaml, ``plugin_settings`` into
    ``plugins.layercapture`` and ``virtual_printer`` into ``plugins.virtual_printer``
    (e.g. ``{"okBeforeCommandOutput": True}``). ``log_levels`` maps logger names to levels
    in logging.yaml (e.g. ``{"octoprint.plugins.layercapture": "DEBUG"}``).
    ``firmware_quirks`` installs the test plugin of harness/firmware_plugin (firmware
    behaviour the Virtual Printer has no setting for, e.g. no M400) and records the lines
    the printer sends (:meth:`received_lines`).
    ``slow_print_started`` installs a plugin whose PrintStarted handler sleeps that long
    before layercapture's runs. ``gcode_scripts`` are OctoPrint's G-code scripts
    (``afterPrintPaused``, ...) written to ``basedir/scripts/gcode/`` (see also
    :meth:`set_gcode_scripts`). ``serial_log`` turns on OctoPrint's serial.log.
    The files are written on the first :meth:`start`; restarts keep what is on disk.
    """

    def __init__(
        self,
        basedir: Path,
        port: Optional[int] = None,
        config_overrides: Optional[Mapping[str, Any]] = None,
        plugin_settings: Optional[Mapping[str, Any]] = None,
        *,
        virtual_printer: Optional[Mapping[str, Any]] = None,
        pluginmanager: bool = False,
        log_levels: Optional[Mapping[str, str]] = None,
        env: Optional[Mapping[str, str]] = None,
        install_recorder: bool = True,
        firmware_quirks: bool = False,
        slow_print_started: float = 0.0,
        gcode_scripts: Optional[Mapping[str, str]] = None,
        serial_log: bool = False,
        startup_timeout: float = STARTUP_TIMEOUT,
        name: Optional[str] = None,
    ) -> None:
        self.basedir = Path(basedir)
        self._fixed_port = port
        self.port = port or 0
        self.config_overrides = dict(config_overrides or {})
        self.plugin_settings = dict(plugin_settings or {})
        self.virtual_printer = dict(virtual_printer or {})
        self.pluginmanager = pluginmanager
        self.log_levels = dict(log_levels or {})
        self.extra_env = dict(env or {})
        self.install_recorder = install_recorder
        self.firmware_quirks = firmware_quirks
        self.slow_print_started = slow_print_started
        self.gcode_scripts = dict(gcode_scripts or {})
        self.serial_log = serial_log
        self.startup_timeout = startup_timeout
        self.name = name or self.basedir.name
        self.users: Dict[str, UserInfo] = {
            user: UserInfo(user, PASSWORDS[user], secrets.token_hex(16).upper(), user == ADMIN)
            for user in (ADMIN, VIEWER)
        }
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.startup_seconds: Optional[float] = None  # process start -> /api/version answers
        self.ready_seconds: Optional[float] = None  # ... -> every on_after_startup has run
        self.startup_log: str = ""  # octoprint.log right after the last start
        self._prepared = False
        self._http = requests.Session()
        self._listener: Optional[EventListener] = None
        self._listener_lock = threading.Lock()
        self._action_mark = 0
        self._output_handle: Any = None
        self._start_log_offset = 0

    # ---- paths -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.basedir / "config.yaml"

    @property
    def log_path(self) -> Path:
        return self.basedir / "logs" / "octoprint.log"

    @property
    def output_path(self) -> Path:
        return self.basedir / OUTPUT_FILE

    @property
    def recorder_path(self) -> Path:
        return self.basedir / RECORDER_FILE

    @property
    def uploads_dir(self) -> Path:
        return self.basedir / "uploads"

    @property
    def admin_key(self) -> str:
        return self.users[ADMIN].api_key

    @property
    def viewer_key(self) -> str:
        return self.users[VIEWER].api_key

    # ---- set-up ------------------------------------------------------------------------

    def config(self) -> Dict[str, Any]:
        """The config.yaml content this server starts with (first start): the quiet base,
        then a config.yaml already in basedir (e.g. written by a migration test), then
        ``virtual_printer``, ``plugin_settings`` and ``config_overrides``."""
        config = base_config(pluginmanager=self.pluginmanager)
        if self.serial_log:
            config = deep_merge(config, {"serial": {"log": True}})
        if self.config_path.is_file():
            existing = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
            config = deep_merge(config, existing)
        if self.virtual_printer:
            config = deep_merge(config, {"plugins": {"virtual_printer": self.virtual_printer}})
        if self.plugin_settings:
            config = deep_merge(config, {"plugins": {"layercapture": self.plugin_settings}})
        return deep_merge(config, self.config_overrides)

    def prepare(self) -> None:
        """Writes config.yaml, users.yaml, logging.yaml and the recorder plugin."""
        self.basedir.mkdir(parents=True, exist_ok=True)
        self._write_yaml(self.config_path, self.config())
        users: Dict[str, Any] = {"_version": 2}
        for user in self.users.values():
            users[user.name] = {
                "active": True,
                "apikey": user.api_key,
                "groups": ["admins", "users"] if user.admin else ["users"],
                "password": password_hash(user.password),
                "permissions": [],
                "settings": {},
            }
        self._write_yaml(self.basedir / "users.yaml", users)
        if self.log_levels:
            loggers = {name: {"level": level} for name, level in self.log_levels.items()}
            self._write_yaml(self.basedir / "logging.yaml", {"loggers": loggers})
        if self.pluginmanager:
            cache = self.basedir / "data" / "pluginmanager"
            cache.mkdir(parents=True, exist_ok=True)
            for name in ("plugins.json", "notices.json"):  # fresh, so used instead of fetching
                (cache / name).write_text("[]", encoding="utf-8")
        if self.install_recorder:
            plugins = self.basedir / "plugins"
            plugins.mkdir(exist_ok=True)
            shutil.copy2(RECORDER_SOURCE, plugins / RECORDER_SOURCE.name)
        if self.firmware_quirks:
            plugins = self.basedir / "plugins"
            plugins.mkdir(exist_ok=True)
            shutil.copy2(FIRMWARE_SOURCE, plugins / FIRMWARE_SOURCE.name)
        if self.slow_print_started:
            plugins = self.basedir / "plugins"
            plugins.mkdir(exist_ok=True)
            shutil.copy2(SLOW_START_SOURCE, plugins / SLOW_START_SOURCE.name)
        for name, text in self.gcode_scripts.items():
            self.script_path(name).parent.mkdir(parents=True, exist_ok=True)
            self.script_path(name).write_text(text, encoding="utf-8")
        self._prepared = True

    def script_path(self, name: str) -> Path:
        """Where OctoPrint keeps its G-code script ``name`` (a Jinja template)."""
        return self.basedir / "scripts" / "gcode" / name

    def set_gcode_scripts(self, scripts: Mapping[str, str]) -> None:
        """Sets OctoPrint's G-code scripts through its settings API, as the Settings >
        GCODE Scripts dialog does ("" removes one); OctoPrint reads them at each use."""
        response = self.api("POST", "/api/settings", json={"scripts": {"gcode": dict(scripts)}})
        assert response.status_code == 200, f"scripts: {response.status_code} {response.text}"

    @staticmethod
    def _write_yaml(path: Path, data: Any) -> None:
        path.write_text(yaml.safe_dump(data, default_flow_style=False), encoding="utf-8")

    # ---- process -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> OctoPrintServer:
        """Starts the process and returns once GET /api/version answers."""
        if self.running:
            return self
        if self not in ALL_SERVERS:
            ALL_SERVERS.append(self)
        if not self._prepared:
            self.prepare()
        attempts = 1 if self._fixed_port else 3
        for attempt in range(1, attempts + 1):
            if not self._fixed_port:
                self.port = free_port()
            try:
                self._spawn_and_wait()
                break
            except _PortInUse:
                if attempt == attempts:
                    raise AssertionError(
                        f"OctoPrint could not bind a port after {attempts} attempts\n"
                        + self.diagnostics()
                    ) from None
        self.startup_log = self.log_text(since=self._start_log_offset)
        return self

    def _spawn_and_wait(self) -> None:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["LC_TEST_RECORDER_FILE"] = str(self.recorder_path)
        if self.firmware_quirks:
            env["LC_TEST_RECORD_RECEIVED"] = "1"
        if self.slow_print_started:
            env["LC_TEST_SLOW_PRINT_STARTED"] = str(self.slow_print_started)
        env.update(self.extra_env)
        cmd = [
            sys.executable,
            "-m",
            "octoprint",
            "serve",
            "--basedir",
            str(self.basedir),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--iknowwhatimdoing",
        ]
        log_offset = self._start_log_offset = self.log_size()
        self.startup_seconds = None
        self._output_handle = open(self.output_path, "ab")
        self._output_handle.write(f"\n=== {' '.join(cmd)}\n".encode())
        self._output_handle.flush()
        started = time.monotonic()
        self.process = subprocess.Popen(
            cmd,
            cwd=str(self.basedir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._output_handle,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )
        deadline = started + self.startup_timeout
        probe = requests.Session()
        probe.headers["X-Api-Key"] = self.admin_key
        while True:
            code = self.process.poll()
            if code is not None:
                self._close_output()
                if "Address already in use" in self._read_since(self.output_path, 0) or (
                    "Address already in use" in self._read_since(self.log_path, log_offset)
                ):
                    raise _PortInUse()
                raise AssertionError(
                    f"OctoPrint exited with code {code} during start-up\n" + self.diagnostics()
                )
            if self.startup_seconds is None:
                try:
                    response = probe.get(f"{self.url}/api/version", timeout=2)
                    if response.status_code == 200:
                        self.startup_seconds = time.monotonic() - started
                except requests.RequestException:
                    pass
            if self.startup_seconds is not None and (
                not self.install_recorder or self._after_startup_seen(log_offset)
            ):
                break
            if time.monotonic() > deadline:
                self._kill()
                what = "/api/version" if self.startup_seconds is None else "after-startup"
                raise AssertionError(
                    f"OctoPrint did not finish start-up ({what}) within "
                    f"{self.startup_timeout:g} s\n" + self.diagnostics()
                )
            # fallback polling: nothing to subscribe to before the server is up
            time.sleep(0.05)
        self.ready_seconds = time.monotonic() - started

    def _after_startup_seen(self, log_offset: int) -> bool:
        # The recorder logs this from its on_after_startup, which OctoPrint calls after
        # layercapture's; OctoPrint's log is asynchronous but ordered, so once the line is
        # in the file every earlier start-up line is too.
        return AFTER_STARTUP_LINE in self._read_since(self.log_path, log_offset)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait for a clean shutdown, SIGKILL if it does not come."""
        self._stop_listener()
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self._close_output()

    def restart(self) -> OctoPrintServer:
        """Stops and starts again on the same basedir (and port, if it is still free)."""
        self.stop()
        fixed = self._fixed_port
        self._fixed_port = fixed or self.port
        try:
            return self.start()
        except AssertionError:
            if fixed:
                raise
            self._fixed_port = None
            return self.start()
        finally:
            self._fixed_port = fixed

    def _kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def _close_output(self) -> None:
        if self._output_handle is not None:
            self._output_handle.close()
            self._output_handle = None

    def __enter__(self) -> OctoPrintServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- logs and diagnostics ----------------------------------------------------------

    @staticmethod
    def _read_since(path: Path, offset: int) -> str:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        """Current size of octoprint.log: pass as ``since`` to read only later lines."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        """basedir/logs/octoprint.log (from byte offset ``since``)."""
        return self._read_since(self.log_path, since)

    def wait_for_log(self, needle: str, timeout: float = 10.0, since: int = 0) -> str:
        """Waits until octoprint.log (from ``since``) contains ``needle``; returns the line.

        OctoPrint writes its log asynchronously, so a line may land shortly after the
        request that caused it. Polls the file (there is no push channel for logs)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text(since).splitlines():
                if needle in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{needle!r} not in octoprint.log within {timeout:g} s\n"
                    + self.tail(self.log_text(since), 40)
                )
            time.sleep(0.05)

    def output_text(self) -> str:
        """The subprocess's stdout and stderr."""
        return self._read_since(self.output_path, 0)

    @staticmethod
    def tail(text: str, lines: int = 80) -> str:
        return "\n".join(text.splitlines()[-lines:])

    def diagnostics(self, lines: int = 60) -> str:
        """Tail of octoprint.log plus the process output that is not in the log
        (stderr tracebacks, werkzeug lines), for failure reports."""
        output = [
            line
            for line in _ANSI.sub("", self.output_text()).splitlines()
            if line.strip() and not _LOG_LINE.match(line) and not line.startswith("|")
        ]
        state = "running" if self.running else f"exit code {self.exit_code()}"
        return (
            f"--- {self.name} ({state}): tail of {self.log_path} ---\n"
            + self.tail(self.log_text(), lines)
            + f"\n--- {self.name}: process output not in the log ({self.output_path}) ---\n"
            + "\n".join(output[-(lines // 2) :])
        )

    def exit_code(self) -> Optional[int]:
        return None if self.process is None else self.process.poll()

    def copy_artifacts(self, target: Path) -> Path:
        """Copies logs, process output, recorder file and config.yaml to ``target``."""
        target.mkdir(parents=True, exist_ok=True)
        logs = self.basedir / "logs"
        if logs.is_dir():
            shutil.copytree(logs, target / "logs", dirs_exist_ok=True)
        for path in (self.output_path, self.recorder_path, self.config_path):
            if path.is_file():
                shutil.copy2(path, target / path.name)
        return target

    # ---- REST --------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request as the admin; ``path`` like "/api/settings"."""
        return self.api_as(ADMIN, method, path, **kwargs)

    def api_as(
        self, user: Optional[str], method: str, path: str, **kwargs: Any
    ) -> requests.Response:
        """A request as ``user`` ("admin", "viewer") or without credentials (None)."""
        headers = dict(kwargs.pop("headers", None) or {})
        if user is not None:
            headers.setdefault("X-Api-Key", self.users[user].api_key)
        kwargs.setdefault("timeout", 30)
        url = path if path.startswith("http") else self.url + "/" + path.lstrip("/")
        if user is None:  # no cookies either
            return requests.request(method, url, headers=headers, **kwargs)
        return self._http.request(method, url, headers=headers, **kwargs)

    def get_json(self, path: str) -> Any:
        response = self.api("GET", path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def settings(self) -> Dict[str, Any]:
        return dict(self.get_json("/api/settings"))

    def plugin_settings_now(self, plugin: str = "layercapture") -> Dict[str, Any]:
        return dict(self.settings()["plugins"][plugin])

    def save_plugin_settings(
        self, values: Mapping[str, Any], plugin: str = "layercapture"
    ) -> requests.Response:
        return self.api("POST", "/api/settings", json={"plugins": {plugin: dict(values)}})

    # ---- users -------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        groups: Sequence[str] = (),
        permissions: Sequence[str] = (),
        password: Optional[str] = None,
    ) -> UserInfo:
        """Creates a user through OctoPrint's access API (as the admin) with exactly these
        groups and extra permissions (keys such as ``"PLUGIN_LAYERCAPTURE_VIEW"``), gives
        it an API key and returns it; :meth:`api_as` then works with ``name``."""
        password = password or f"lc-{name}-pass"
        response = self.api(
            "POST",
            "/api/access/users",
            json={
                "name": name,
                "password": password,
                "active": True,
                "groups": list(groups),
                "permissions": list(permissions),
            },
        )
        assert response.status_code == 200, f"add user {name}: {response.text}"
        response = self.api("POST", f"/api/access/users/{name}/apikey")
        assert response.status_code == 200, f"API key for {name}: {response.text}"
        user = UserInfo(
            name,
            password,
            str(response.json()["apikey"]),
            "admins" in groups,
            tuple(groups),
            tuple(permissions),
        )
        self.users[name] = user
        return user

    def add_web_users(self) -> Dict[str, UserInfo]:
        """Creates the users of :data:`WEB_USERS` (Operator, read-only, View captures
        only, View + Manage captures without Settings) unless they exist."""
        for name, (groups, permissions) in WEB_USERS.items():
            if name not in self.users:
                self.add_user(name, groups, permissions)
        return {name: self.users[name] for name in WEB_USERS}

    # ---- push API ----------------------------------------------------------------------

    @property
    def events(self) -> EventListener:
        """The admin's push-API listener (started on first use, again after a restart)."""
        with self._listener_lock:
            if self._listener is None or not self._listener.alive:
                if self._listener is not None:
                    self._listener.stop()
                self._listener = EventListener(
                    self.url, self.admin_key, name=f"lc-events-{self.name}"
                ).start()
                self._action_mark = 0
            return self._listener

    def listen_as(
        self, user: Optional[str], registered: bool = False, defer_login: bool = False
    ) -> EventListener:
        """A started push-API listener for ``user`` (None: anonymous); the caller stops it.

        ``registered=False`` works for every user (see :class:`EventListener`); True also
        waits until events flow, which needs OctoPrint's Status permission.
        ``defer_login``: logged in only by the listener's ``log_in()``."""
        key = None if user is None else self.users[user].api_key
        name = f"lc-events-{self.name}-{user or 'anonymous'}"
        listener = EventListener(
            self.url, key, name=name, registered=registered, defer_login=defer_login
        )
        return listener.start()

    def barrier(self, listeners: Sequence[EventListener], timeout: float = 10.0) -> None:
        """Returns once every listener received a plugin message sent after this call: what
        was pushed before it reached each socket by then (OctoPrint sends in order)."""
        token = secrets.token_hex(8)
        response = self.api(
            "POST", "/api/plugin/lc_test_recorder", json={"command": "barrier", "token": token}
        )
        assert response.status_code == 204, f"barrier: {response.status_code} {response.text}"
        for listener in listeners:
            listener.wait_for_plugin_message(
                "lc_test_recorder", timeout, lambda data: data.get("token") == token
            )

    def _stop_listener(self) -> None:
        with self._listener_lock:
            if self._listener is not None:
                self._listener.stop()
                self._listener = None

    def mark(self) -> int:
        """Sets and returns the default ``since`` of the wait helpers (now)."""
        self._action_mark = self.events.mark()
        return self._action_mark

    def wait_for_event(
        self,
        name: str,
        timeout: float,
        predicate: Optional[Callable[[Any], bool]] = None,
        since: Optional[int] = None,
    ) -> Message:
        """Waits for event ``name``; ``since`` defaults to the last mark (see :meth:`mark`,
        set by connect/upload/start_print too)."""
        events = self.events
        return events.wait_for_event(
            name, timeout, predicate, since=self._action_mark if since is None else since
        )

    def wait_for_plugin_message(
        self,
        timeout: float,
        predicate: Optional[Callable[[Any], bool]] = None,
        plugin: str = "layercapture",
        since: Optional[int] = None,
    ) -> Message:
        events = self.events
        return events.wait_for_plugin_message(
            plugin, timeout, predicate, since=self._action_mark if since is None else since
        )

    # ---- printer -----------------------------------------------------------------------

    def state(self) -> str:
        """OctoPrint's state text: "Operational", "Printing", "Offline", ..."""
        return str(self.get_json("/api/connection")["current"]["state"])

    def wait_for_state(self, pred: StatePredicate, timeout: float = 30.0) -> str:
        """Waits until the printer state text matches (a str compares case-insensitively
        with the text and the state id, a callable gets the text)."""
        if isinstance(pred, str):
            wanted = pred.lower()

            def matches(text: str, state_id: str = "") -> bool:
                return wanted in (text.lower(), state_id.lower())

        else:

            def matches(text: str, state_id: str = "") -> bool:
                return bool(pred(text))

        events = self.events
        mark = events.mark()  # before the REST read: no change can fall in between
        current = self.state()
        if matches(current):
            return current
        message = events.wait_for(
            lambda m: (
                m.kind == "event"
                and m.name == "PrinterStateChanged"
                and matches(str(m.payload.get("state_string", "")), str(m.payload.get("state_id")))
            ),
            timeout,
            since=mark,
            description=f"printer state {pred!r} (was {current!r})",
        )
        return str(message.payload.get("state_string"))

    def connect(self, timeout: float = 30.0) -> None:
        """Connects the virtual printer and waits for Operational."""
        self.mark()
        if self.state() == "Operational":
            return
        response = self.api(
            "POST",
            "/api/connection",
            json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200},
        )
        assert response.status_code == 204, f"connect: {response.status_code} {response.text}"
        self.wait_for_state("Operational", timeout)

    def disconnect(self, timeout: float = 15.0) -> None:
        response = self.api("POST", "/api/connection", json={"command": "disconnect"})
        assert response.status_code == 204, f"disconnect: {response.status_code}"
        # events say "Offline"; GET /api/connection says "Closed" once nothing is connected
        self.wait_for_state(lambda text: text.lower() in ("offline", "closed"), timeout)

    def upload(
        self,
        path: Union[str, Path],
        print: bool = False,
        select: bool = True,
        name: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Uploads a G-code file to local storage; returns OctoPrint's JSON answer."""
        path = Path(path)
        self.mark()
        with open(path, "rb") as handle:
            response = self.api(
                "POST",
                "/api/files/local",
                files={"file": (name or path.name, handle, "application/octet-stream")},
                data={"select": str(select).lower(), "print": str(print).lower()},
            )
        assert response.status_code == 201, f"upload: {response.status_code} {response.text}"
        return dict(response.json())

    def start_print(self, path: Union[str, Path], name: Optional[str] = None) -> Dict[str, Any]:
        """Uploads, selects and starts printing ``path``; returns the upload answer."""
        return self.upload(path, print=True, select=True, name=name)

    def wait_print_done(self, timeout: float = 120.0, since: Optional[int] = None) -> Message:
        """Waits for the end of the print started last; fails unless it is PrintDone."""
        ends = ("PrintDone", "PrintFailed", "PrintCancelled")
        start = self._action_mark if since is None else since
        message = self.events.wait_for(
            lambda m: m.kind == "event" and m.name in ends,
            timeout,
            since=start,
            description="the end of the print (PrintDone/PrintFailed/PrintCancelled)",
        )
        assert message.name == "PrintDone", f"print ended with {message.short()}"
        return message

    # ---- recorder ----------------------------------------------------------------------

    def sent_records(self) -> List[Dict[str, Any]]:
        """Everything the recorder plugin wrote: "sent" lines and "position" reports."""
        records = []
        for line in self._read_since(self.recorder_path, 0).splitlines():
            if line.strip():
                with contextlib.suppress(ValueError):  # a line being written right now
                    records.append(json.loads(line))
        return records

    def sent_lines(self, since: float = 0.0) -> List[Dict[str, Any]]:
        """Lines sent to the printer ({"line", "gcode", "tags", "t"}), oldest first;
        ``since`` is a time.monotonic() value."""
        return [r for r in self.sent_records() if r.get("type") == "sent" and r["t"] >= since]

    def received_lines(self, since: float = 0.0) -> List[Dict[str, Any]]:
        """Lines the printer sent ({"line", "t"}), oldest first; recorded only for servers
        made with ``firmware_quirks``."""
        return [r for r in self.sent_records() if r.get("type") == "received" and r["t"] >= since]

    def positions(self, since: float = 0.0) -> List[Dict[str, Any]]:
        """PositionUpdate payloads with their time ({"t", "payload"})."""
        return [r for r in self.sent_records() if r.get("type") == "position" and r["t"] >= since]


class _PortInUse(Exception):
    pass
