"""Screenshots of the demo's runs in the Prefect UI, in a real browser (``make ui-shots``).

Starts ``basinflow ui`` (Prefect's server and UI on the demo's runs, loopback, a free port,
analytics off), finds the latest ``cook`` run of the demo and its artifacts through the API,
and has Debian's Chromium (headless) render each page: the runs list, the run's logs, its
artifacts, each artifact and the batch sub-flow. The UI is a single-page app that fetches
after it loads, so Chromium is given a virtual-time budget to finish before the shot.

    python docs/ui_shots.py --demo demo-data --out docs/img/ui-shots

Look at every PNG: that is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{base}{path}", data, {"Content-Type": "application/json"} if data else {}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def start(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """A server command in a session of its own (so :func:`stop` ends it and its children)."""
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C to the server's session, as a user stops it; then kill if it hangs."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    except ProcessLookupError:  # it has ended already
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_ui(demo: Path, port: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("basinflow")
    cmd = [str(exe), "ui", "--config", str(demo / "basinflow.yaml"), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    return start(cmd, env)


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            api(base, "/health")
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the Prefect server did not start") from None
            time.sleep(0.5)


def shoot(chromium: str, url: str, png: Path, size: str, budget_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ui-shots-profile-") as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                f"--virtual-time-budget={budget_ms}",
                f"--screenshot={png}",
                url,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=180,
        )
    print(f"  {png}  <- {url}")


def pages(base: str, ui: str) -> list[tuple[str, str]]:
    """``(name, URL)`` of the pages worth looking at, for the demo's latest cook run."""
    runs = api(
        base,
        "/flow_runs/filter",
        {"flow_runs": {"name": {"like_": "cook/demo/"}}, "sort": "START_TIME_DESC", "limit": 50},
    )
    cooks = [r for r in runs if r["name"].count("/") == 3]
    if not cooks:
        raise SystemExit("no cook runs of the demo: run `make demo` first")
    # the latest run that cooked something (it has the quicklook gallery)
    top = None
    for run in cooks:
        arts = api(base, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
        if any(a["type"] == "markdown" for a in arts):
            top = run
            break
    top = top or cooks[0]
    arts = api(base, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [top["id"]]}}})
    out = [
        ("runs", f"{ui}/runs"),
        ("cook-run-logs", f"{ui}/runs/flow-run/{top['id']}"),
        ("artifacts", f"{ui}/artifacts"),
    ]
    for art in arts:
        out.append((f"artifact-{art['type']}", f"{ui}/artifacts/artifact/{art['id']}"))
    batches = [r for r in runs if r["name"].startswith(top["name"] + "/batch-")]
    if batches:
        out.append(("batch-run-logs", f"{ui}/runs/flow-run/{batches[0]['id']}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("demo-data"))
    parser.add_argument("--out", type=Path, default=Path("docs/img/ui-shots"))
    parser.add_argument("--size", default="1600,1200", help="window size WIDTH,HEIGHT")
    parser.add_argument("--budget", type=int, default=20000, help="virtual time per page, ms")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: apt-get update && apt-get install -y chromium")
    if not (args.demo / "basinflow.yaml").exists():
        raise SystemExit(f"no demo in {args.demo}: run `make demo` first")
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_ui(args.demo.absolute(), port)
    try:
        base, ui = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{port}"
        wait_healthy(base, proc)
        for name, url in pages(base, ui):
            shoot(chromium, url, args.out / f"{name}.png", args.size, args.budget)
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
