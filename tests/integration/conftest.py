"""Fixtures for tests against a real OctoPrint server (see tests/support/harness).

* ``octoprint_server``: one server per test module, connected to the virtual printer.
  A module can change how it starts by overriding ``octoprint_server_options``
  (module scope, returns keyword arguments for :class:`OctoPrintServer`).
* ``make_server(**kw)``: a factory for servers with special settings; they are stopped
  after the test. ``connect=False`` skips connecting the printer, ``start=False`` also
  skips starting.

On failure the tail of octoprint.log and of the process output is appended to the test
report, and each involved server's logs are copied to test-artifacts/<test>/<server>/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from harness import ALL_SERVERS, OctoPrintServer, artifact_dir, item_failed

INTEGRATION_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """Marks every test under tests/integration with ``integration``."""
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _save_diagnostics(
    config: pytest.Config, nodeid: str, servers: List[OctoPrintServer]
) -> List[str]:
    """Copies the servers' logs to test-artifacts and returns report sections."""
    sections = []
    for server in servers:
        target = artifact_dir(config.rootpath, nodeid, server.name)
        try:
            server.copy_artifacts(target)
            where = f"(copied to {target})"
        except OSError as exc:
            where = f"(could not copy artifacts: {exc})"
        sections.append(f"{server.name} at {server.url} {where}\n{server.diagnostics()}")
    return sections


@pytest.fixture(autouse=True)
def _octoprint_diagnostics(request: pytest.FixtureRequest) -> Iterator[None]:
    """On failure: log tails into the report, logs into test-artifacts/<test>/."""
    first_new = len(ALL_SERVERS)
    running_before = [server for server in ALL_SERVERS if server.running]
    yield
    if not item_failed(request.node):
        return
    servers = running_before + [s for s in ALL_SERVERS[first_new:] if s not in running_before]
    sections = _save_diagnostics(request.config, request.node.nodeid, servers)
    report = getattr(request.node, "rep_call", None) or getattr(request.node, "rep_setup", None)
    for server, text in zip(servers, sections):
        if report is not None:  # shown with the failure in pytest's FAILURES section
            report.sections.append((f"OctoPrint diagnostics: {server.name}", text))
        else:
            print(text)


@pytest.fixture(scope="module")
def octoprint_server_options() -> Dict[str, Any]:
    """Keyword arguments for the module's server; override in a test module."""
    return {}


@pytest.fixture(scope="module")
def octoprint_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    octoprint_server_options: Dict[str, Any],
) -> Iterator[OctoPrintServer]:
    """One OctoPrint per test module, started and connected to the virtual printer."""
    options = dict(octoprint_server_options)
    module = request.module.__name__.rpartition(".")[2]
    options.setdefault("name", f"{module}-server")
    server = OctoPrintServer(tmp_path_factory.mktemp(f"op-{module}"), **options)
    try:
        server.start()
        server.connect()
    except BaseException:
        # the autouse diagnostics fixture does not see module set-up failures
        _save_diagnostics(request.config, request.node.nodeid, [server])
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def make_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., OctoPrintServer]]:
    """Factory: ``make_server(plugin_settings={...}, connect=False, ...)``."""
    created: List[OctoPrintServer] = []

    def factory(*, start: bool = True, connect: bool = True, **kwargs: Any) -> OctoPrintServer:
        basedir = kwargs.pop("basedir", None) or tmp_path_factory.mktemp("op")
        kwargs.setdefault("name", f"server{len(created) + 1}-{Path(basedir).name}")
        server = OctoPrintServer(basedir, **kwargs)
        created.append(server)
        if start:
            server.start()
            if connect:
                server.connect()
        return server

    yield factory
    for server in created:
        server.stop()
