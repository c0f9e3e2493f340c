"""Does memory come back after a sweep of bad input?

    python bench/memory_after_bad_input.py [--rounds 1] [--idle 60] [--database-url URL]

Starts the app as a user does (`python app.py`, its own data folder, SQLite unless
`--database-url`), reads its resident set size (RSS, from /proc) once it has served one
good call of every endpoint — the baseline, with every code path loaded — then sends
every named endpoint a deterministic sweep of bad input as raw requests: each hostile
value (a megabyte of text, integers past BIGINT, malformed file references, wrong
kinds…) in every parameter, one parameter at a time and all at once. It reads RSS
again straight after the sweep and after `--idle` seconds with nothing to do.

Target (issue 13): RSS after the sweep and a minute idle within 10 % of the baseline
(it once grew from 278 to 492 MB and stayed there).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
LONG_TEXT = "x" * 1_000_000
HOSTILE: list[Any] = [
    None,
    "",
    "-1",
    "../../etc/passwd",
    "\x00",
    LONG_TEXT,
    [LONG_TEXT, LONG_TEXT],
    {"text": LONG_TEXT, "files": [LONG_TEXT]},
    2**63,
    -(2**63) - 1,
    1e308,
    True,
    [],
    {},
    {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
    {"headers": "x", "data": 3},
]
ANSWER_SECONDS = 30.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(data_dir: Path, port: int, database_url: str | None) -> subprocess.Popen:
    env = {
        **os.environ,
        "SPOONFEEDER_DATA_DIR": str(data_dir),
        "GRADIO_ANALYTICS_ENABLED": "False",
        # Nothing listens here: provider calls fail fast, as on a machine without them.
        "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
        "COMFYUI_URL": f"http://127.0.0.1:{free_port()}",
    }
    args = [sys.executable, "app.py", "--port", str(port)]
    if database_url:
        args += ["--database-url", database_url]
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_ready(base: str, app: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            sys.exit(f"the app exited with status {app.returncode}")
        try:
            if httpx.get(base + "gradio_api/info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit("the app did not start in time")


def endpoints(client: httpx.Client, base: str) -> list[tuple[str, int, list[dict]]]:
    info = client.get(base + "gradio_api/info").json()["named_endpoints"]
    config = client.get(base + "config").json()
    index = {f"/{d['api_name']}": d["id"] for d in config["dependencies"] if d.get("api_name")}
    return [(name, index[name], ep["parameters"]) for name, ep in info.items()]


def call(client: httpx.Client, base: str, name: str, fn_index: int, data: list) -> str:
    """One raw call to its end (or its first streamed frame, then cancelled); the last event."""
    session = uuid.uuid4().hex
    route = name.lstrip("/")
    posted = client.post(
        f"{base}gradio_api/call/{route}", json={"data": data, "session_hash": session}
    )
    if posted.status_code != 200:
        return f"http {posted.status_code}"
    event_id = posted.json()["event_id"]
    kind = ""
    with client.stream(
        "GET", f"{base}gradio_api/call/{route}/{event_id}", timeout=ANSWER_SECONDS
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
                if kind in ("complete", "error", "generating"):
                    break
    if kind == "generating":
        client.post(
            f"{base}gradio_api/cancel",
            json={"session_hash": session, "fn_index": fn_index, "event_id": event_id},
        )
    return kind


def defaults(parameters: list[dict]) -> list[Any]:
    values = []
    for parameter in parameters:
        value = parameter.get("parameter_default", parameter.get("example_input"))
        values.append(None if value is not None and "http" in json.dumps(value) else value)
    return values


def good_pass(client: httpx.Client, base: str, found: list) -> None:
    for name, fn_index, parameters in found:
        call(client, base, name, fn_index, defaults(parameters))


def bad_sweep(client: httpx.Client, base: str, found: list) -> int:
    calls = 0
    for name, fn_index, parameters in found:
        base_args = defaults(parameters)
        for value in HOSTILE:
            variants = [[value] * len(parameters)]
            variants += [
                [*base_args[:i], value, *base_args[i + 1 :]] for i in range(len(parameters))
            ]
            for data in variants:
                call(client, base, name, fn_index, data)
                calls += 1
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="bad-input sweeps in a row")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds idle before the end")
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}/"
        app = start_app(Path(tmp), port, args.database_url)
        try:
            wait_ready(base, app)
            with httpx.Client(timeout=ANSWER_SECONDS) as client:
                found = endpoints(client, base)
                good_pass(client, base, found)
                good_pass(client, base, found)
                time.sleep(5)
                before = rss_mb(app.pid)
                print(f"{len(found)} endpoints; RSS at baseline {before:.0f} MB", flush=True)
                started = time.monotonic()
                for round_number in range(1, args.rounds + 1):
                    calls = bad_sweep(client, base, found)
                    print(
                        f"sweep {round_number}: {calls} bad calls in "
                        f"{time.monotonic() - started:.0f} s; RSS {rss_mb(app.pid):.0f} MB",
                        flush=True,
                    )
            after_sweep = rss_mb(app.pid)
            time.sleep(args.idle)
            after_idle = rss_mb(app.pid)
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        finally:
            app.terminate()
            app.wait(30)

    ratio = after_idle / before
    verdict = "ok" if ratio <= 1.10 else "OVER"
    print(f"\nload average {load}")
    print(f"{'baseline':<22}{before:>8.0f} MB")
    print(f"{'after the sweep':<22}{after_sweep:>8.0f} MB  ({after_sweep / before:.2f}×)")
    print(f"{f'after {args.idle:.0f} s idle':<22}{after_idle:>8.0f} MB  ({ratio:.2f}×)  {verdict}")


if __name__ == "__main__":
    main()
