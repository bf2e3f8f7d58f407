"""Browser tests: Debian's Chromium driven by Python Playwright against a real OctoPrint.

They skip when /usr/bin/chromium (debian-packages.txt) or the playwright package is
missing, unless ``LAYERCAPTURE_REQUIRE_PROGRAMS=1`` (set by .ci/run): then a missing
browser is an error. No browser is ever downloaded. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from harness import ADMIN, OctoPrintServer, artifact_dir, item_failed
from system_packages import REQUIRE_ENV, require_program, required_in_ci

BROWSER_DIR = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    for item in items:
        if BROWSER_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium_available() -> None:
    require_program(CHROMIUM)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        why = "the playwright Python package is missing (pip install -e '.[test]')"
        if required_in_ci():
            pytest.fail(f"{why}; {REQUIRE_ENV}=1 makes this an error", pytrace=False)
        pytest.skip(why)


@pytest.fixture(scope="session")
def screenshots(pytestconfig: pytest.Config) -> Path:
    folder = Path(pytestconfig.rootpath) / "test-artifacts" / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def ui_server_options() -> Dict[str, Any]:
    """Keyword arguments for the module's server; override in a test module."""
    return {}


@pytest.fixture(scope="module")
def ui_server(
    chromium_available: None,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    ui_server_options: Dict[str, Any],
) -> Iterator[OctoPrintServer]:
    module = request.module.__name__.rpartition(".")[2]
    options = {
        # the virtual printer's simulated link errors (one stalls for 30 s) are the fault
        # tests' business; here they would only hit a capture at random
        "virtual_printer": {"simulated_errors": []},
        **ui_server_options,
    }
    server = OctoPrintServer(
        tmp_path_factory.mktemp(f"op-{module}"), name=f"{module}-server", **options
    )
    try:
        server.start()
        server.connect()
    except BaseException:
        server.copy_artifacts(artifact_dir(request.config.rootpath, request.node.nodeid))
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser_context(
    chromium_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
            accept_downloads=True,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


class LoggedInPage:
    """The OctoPrint UI in one tab, logged in as the admin; records page errors."""

    def __init__(self, page: Any, server: OctoPrintServer) -> None:
        self.page = page
        self.server = server
        self.errors: List[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def login(self, user: str = ADMIN) -> None:
        page = self.page
        page.goto(self.server.url + "/", wait_until="domcontentloaded", timeout=60_000)
        page.fill('[data-test-id="login-username"]', user)
        page.fill('[data-test-id="login-password"]', self.server.users[user].password)
        page.click('[data-test-id="login-submit"]')
        # the first load builds OctoPrint's web assets: allow for it
        page.wait_for_function(
            "() => window.OctoPrint && OctoPrint.coreui && OctoPrint.coreui.startedUp",
            timeout=90_000,
        )


@pytest.fixture(scope="module")
def ui(browser_context: Any, ui_server: OctoPrintServer) -> Iterator[LoggedInPage]:
    page = browser_context.new_page()
    handle = LoggedInPage(page, ui_server)
    handle.login()
    yield handle
    page.close()


@pytest.fixture(autouse=True)
def _no_page_errors(ui: LoggedInPage) -> Iterator[None]:
    """Every test also checks that no script error happened in the page meanwhile."""
    before = len(ui.errors)
    yield
    assert ui.errors[before:] == []


@pytest.fixture(autouse=True)
def _browser_diagnostics(request: pytest.FixtureRequest) -> Iterator[None]:
    """On failure: a screenshot of the page and the server's logs in test-artifacts/."""
    yield
    if not item_failed(request.node):
        return
    target = artifact_dir(request.config.rootpath, request.node.nodeid)
    target.mkdir(parents=True, exist_ok=True)
    names = request.fixturenames
    if "ui" in names:
        handle = request.getfixturevalue("ui")
        try:
            handle.page.screenshot(path=str(target / "page.png"), full_page=True)
        except Exception as exc:  # the page may be gone; the logs still help
            (target / "page-screenshot-failed.txt").write_text(str(exc))
        (target / "page-errors.txt").write_text("\n".join(handle.errors))
    if "ui_server" in names:
        server = request.getfixturevalue("ui_server")
        server.copy_artifacts(target / server.name)
