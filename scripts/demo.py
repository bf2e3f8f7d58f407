"""`make demo`: OctoPrint + virtual printer + fake camera, prints the bundled sample.

Writes a demo basedir (demo-basedir/, kept between runs), starts OctoPrint in the
background on 127.0.0.1:5000, prints octoprint_layercapture/samples/demo_sample.gcode with a
3x3 grid every 3rd layer, waits for the print to finish, tells where the captures are and
leaves the server running for browsing (`make demo-stop` ends it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import requests
import yaml

from octoprint_layercapture.camera_settings import camera_entry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from harness.server import base_config, deep_merge, password_hash  # noqa: E402

HOST = "127.0.0.1"
SAMPLE = ROOT / "octoprint_layercapture" / "samples" / "demo_sample.gcode"
DEMO_USER = "demo"
DEMO_SETTINGS: Dict[str, Any] = {
    "cameras": [camera_entry(type="fake")],
    # the virtual printer's default profile is a 200 x 200 mm bed; the sample sits at 100/100
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_size": 3,
    "capture_every_n_layers": 3,
}


def log(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def stop_previous(basedir: Path) -> None:
    pid_file = basedir / "octoprint.pid"
    if not pid_file.is_file():
        return
    try:
        pid = int(pid_file.read_text().strip())
        os.killpg(pid, signal.SIGTERM)
    except (ValueError, ProcessLookupError, PermissionError):
        pid_file.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)  # waiting for a foreign process to exit: no event to wait on
    pid_file.unlink(missing_ok=True)
    log(f"stopped the previous demo server (pid {pid})")


def write_basedir(basedir: Path) -> Dict[str, str]:
    basedir.mkdir(parents=True, exist_ok=True)
    config = deep_merge(base_config(), {"plugins": {"layercapture": DEMO_SETTINGS}})
    config_path = basedir / "config.yaml"
    if config_path.is_file():
        config = deep_merge(yaml.safe_load(config_path.read_text()) or {}, config)
    config_path.write_text(yaml.safe_dump(config, default_flow_style=False))
    login = {"user": DEMO_USER, "password": secrets.token_urlsafe(9), "apikey": ""}
    login["apikey"] = secrets.token_hex(16).upper()
    users = {
        "_version": 2,
        DEMO_USER: {
            "active": True,
            "apikey": login["apikey"],
            "groups": ["admins", "users"],
            "password": password_hash(login["password"]),
            "permissions": [],
            "settings": {},
        },
    }
    (basedir / "users.yaml").write_text(yaml.safe_dump(users, default_flow_style=False))
    (basedir / "DEMO_LOGIN.txt").write_text(f"user: {DEMO_USER}\npassword: {login['password']}\n")
    return login


def start_server(basedir: Path, port: int) -> subprocess.Popen[bytes]:
    output = open(basedir / "octoprint.out", "ab")  # the child keeps writing to it
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "octoprint",
            "serve",
            "--basedir",
            str(basedir),
            "--host",
            HOST,
            "--port",
            str(port),
            "--iknowwhatimdoing",
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # keeps running after `make demo` returns
    )
    (basedir / "octoprint.pid").write_text(str(process.pid))
    return process


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except requests.RequestException as exc:
            last = exc
        time.sleep(interval)  # polling a remote server's REST API
    raise SystemExit(f"demo: timed out waiting for {what}" + (f" ({last})" if last else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--basedir", type=Path, default=ROOT / "demo-basedir")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--no-print", action="store_true", help="only start the server")
    parser.add_argument("--stop", action="store_true", help="stop a running demo server")
    args = parser.parse_args()
    basedir: Path = args.basedir.resolve()

    stop_previous(basedir)
    if args.stop:
        return 0
    login = write_basedir(basedir)
    process = start_server(basedir, args.port)
    url = f"http://{HOST}:{args.port}"
    api = requests.Session()
    api.headers["X-Api-Key"] = login["apikey"]

    def answering() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"demo: OctoPrint exited, see {basedir / 'octoprint.out'}")
        return api.get(f"{url}/api/version", timeout=2).ok

    wait_until("OctoPrint to answer", answering, 90)
    plugins = api.get(f"{url}/api/settings", timeout=10).json()["plugins"]
    if "layercapture" not in plugins:
        raise SystemExit("demo: OctoPrint answered but the Layer Capture plugin is not loaded")
    log(f"OctoPrint {api.get(f'{url}/api/version').json()['server']} is up at {url}")
    log(f"log in as {login['user']!r} with password {login['password']!r}")

    api.post(
        f"{url}/api/connection",
        json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200},
        timeout=10,
    ).raise_for_status()
    wait_until(
        "the virtual printer",
        lambda: api.get(f"{url}/api/connection").json()["current"]["state"] == "Operational",
        30,
    )
    log("virtual printer connected")
    if args.no_print:
        return 0

    with SAMPLE.open("rb") as handle:
        api.post(
            f"{url}/api/files/local",
            files={"file": (SAMPLE.name, handle)},
            data={"select": "true", "print": "true"},
            timeout=30,
        ).raise_for_status()
    started = time.monotonic()
    log(f"printing {SAMPLE.name} (3x3 grid, every 3rd layer, fake camera)...")

    def finished() -> bool:
        job = api.get(f"{url}/api/job", timeout=5).json()
        state = job.get("state", "")
        if state.startswith(("Error", "Offline")):
            raise SystemExit(f"demo: the print failed: {state}")
        done = job.get("progress", {}).get("completion") or 0
        return state == "Operational" and done >= 100

    wait_until("the print to finish", finished, 600, interval=1.0)
    captures = basedir / "uploads" / DEMO_SETTINGS.get("capture_folder", "layercapture")
    metadata = sorted(captures.rglob("layer_*_metadata_*.json"))
    images = [p for p in captures.rglob("*.jpg") if not p.name.endswith("_thumb.jpg")]
    log(f"print finished in {time.monotonic() - started:.0f} s")
    log(f"{len(metadata)} layers captured, {len(images)} images under {captures}")
    for path in metadata:
        data = json.loads(path.read_text())
        log(f"  layer {data['layer']:>3} at Z {data['z_height']:.2f}: {len(data['images'])} images")
    log(f"\nbrowse {url} (Layer Capture tab); stop the server with `make demo-stop`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
