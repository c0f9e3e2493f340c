"""What the REST face adds, measured against the SDK alone and the service call.

    python bench/api_overhead.py [--tokens 500] [--runs 25] [--concurrent 16]
                                 [--generations 10]

Chat: the fake OpenAI server (the test fake, real wire protocol) streams `--tokens`
tokens from a child process, as a real upstream would. The app — `/api` served by
uvicorn, on SQLite — runs in a second child process, so neither shares this client's
GIL. In the same run, interleaved, we time:

- direct: the openai SDK streaming from the fake, the way a script would;
- api:    POST /api/chat with stream: true (httpx, server-sent events) through the app
          to the same fake, both messages saved to SQLite.

sequentially (medians of time to first token and total) and with `--concurrent`
clients at once (median total per stream). Targets (issue 15): api ≤ direct + 2 ms
TTFT and ≤ 1.02× total sequentially; ≤ 1.10× total at 16 concurrent streams.

Generate: against the fake ComfyUI, in this process (workers, bus and app share its
GIL): POST /api/comfyui/sessions/{id}/generate → the `generation:completed` event on
/api/ws, beside the service call (generator.generate → progress.follow to the end).

The load average is printed at the start and the end: on a busy machine runs swing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx

from bench.chat_overhead import (
    load_average,
    openai_direct,
    serve_in_child,
    timed,
    wait_for_port,
)
from spoonfeeder.config import Settings
from spoonfeeder.context import AppContext
from tests.fakes.comfyui_server import FakeComfyUI
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import free_port, serve

KEY = "bench-key"
MODEL = "gpt-4o-mini"
PROMPT = "Count to five hundred."
CKPT = "tiny-random-sd15.safetensors"


def bench_settings(data: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data,
        database_url=f"sqlite:///{data / 'bench.db'}",
        encryption_key="33" * 32,
        worker_threads=0,
    )


def _serve_app(data: str, fake_url: str, port: int) -> None:
    """The child process: the app's /api on SQLite, OpenAI pointed at the fake."""
    import logging

    import uvicorn

    from spoonfeeder.api.app import create_api

    logging.disable(logging.WARNING)
    ctx = AppContext.create(bench_settings(Path(data)))
    ctx.profiles.save_setting("openai", api_key=KEY, endpoint_url=fake_url + "/v1")
    uvicorn.run(create_api(ctx), host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def app_in_child(fake_url: str) -> Iterator[str]:
    port = free_port()
    data = tempfile.mkdtemp(prefix="sf-api-bench-")
    child = multiprocessing.get_context("spawn").Process(
        target=_serve_app, args=(data, fake_url, port), daemon=True
    )
    child.start()
    try:
        wait_for_port(port, child, seconds=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.join(5)


def direct_run(fake_url: str) -> Callable[[], Iterator[str]]:
    """The openai SDK streaming from the fake, as bench/chat_overhead.py times it."""
    return openai_direct(fake_url + "/v1")


def api_run(app_url: str) -> Callable[[], Iterator[str]]:
    client = httpx.Client(base_url=app_url, timeout=60)
    body = {"target": "openai", "model": MODEL, "message": PROMPT, "stream": True}

    def run() -> Iterator[str]:
        with client.stream("POST", "/api/chat", json=body) as response:
            event = ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "delta":
                    yield json.loads(line[5:])["text"]
                elif line.startswith("data:") and event == "error":
                    raise SystemExit(f"/api/chat failed: {line}")

    return run


def sequential(runs: int, direct: Callable, api: Callable) -> dict[str, tuple[float, float]]:
    samples: dict[str, list[tuple[float, float, int]]] = {"direct": [], "api": []}
    for warm in (direct, api):
        timed(warm)
    for _ in range(runs):
        for name, run in (("direct", direct), ("api", api)):
            samples[name].append(timed(run))
    sizes = {s[2] for values in samples.values() for s in values}
    if len(sizes) != 1:
        raise SystemExit(f"replies differ in length {sizes}; the bench is broken")
    return {
        name: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v))
        for name, v in samples.items()
    }


def concurrent(clients: int, rounds: int, make: Callable[[], Callable]) -> float:
    """Median total ms per stream with `clients` streams at once (one client object each)."""
    runs = [make() for _ in range(clients)]
    totals: list[float] = []
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(rounds):
            totals += [total for _, total, _ in pool.map(timed, runs)]
    return statistics.median(totals)


def bench_chat(tokens: int, runs: int, clients: int) -> None:
    fake = FakeOpenAI(key=KEY, tokens=[f"t{i} " for i in range(tokens)])
    with serve_in_child(fake.app) as fake_url, app_in_child(fake_url) as app_url:
        direct, api = direct_run(fake_url), api_run(app_url)
        medians = sequential(runs, direct, api)
        (d_ttft, d_total), (a_ttft, a_total) = medians["direct"], medians["api"]
        print(f"\nChat, {tokens} tokens, {runs} sequential runs (medians)")
        print(f"  direct SDK      TTFT {d_ttft:7.2f} ms   total {d_total:8.2f} ms")
        print(f"  /api/chat SSE   TTFT {a_ttft:7.2f} ms   total {a_total:8.2f} ms")
        print(
            f"  added TTFT {a_ttft - d_ttft:+.2f} ms (target ≤ +2)   "
            f"total ratio {a_total / d_total:.3f}× (target ≤ 1.02)"
        )
        timed(api)
        d_many = concurrent(clients, 3, lambda: direct_run(fake_url))
        a_many = concurrent(clients, 3, lambda: api_run(app_url))
        print(f"\nChat, {clients} concurrent streams (median total per stream)")
        print(f"  direct {d_many:8.2f} ms   api {a_many:8.2f} ms   ratio {a_many / d_many:.3f}×")
        print("  (target ≤ 1.10×)")


def bench_generate(count: int) -> None:
    from websockets.sync.client import connect

    from spoonfeeder.api.app import create_api

    fake = FakeComfyUI()
    fake.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT])
    parameters = {"prompt": "a red fox", "checkpoint": CKPT, "steps": 3, "seed": 7}
    with serve(fake.app) as comfy_url:
        data = Path(tempfile.mkdtemp(prefix="sf-gen-bench-"))
        settings = bench_settings(data).model_copy(update={"comfyui_url": comfy_url})
        ctx = AppContext.create(settings)
        ctx.comfyui.runner.timings.receive_timeout = 0.01
        ctx.comfyui.runner.timings.poll_interval = 0.01
        ctx.start_workers(1, poll_interval=0.01)
        session = ctx.comfyui.sessions.create("bench")
        # The REST body gives the prompt beside the parameters, as the seed's example does.
        rest_parameters = {k: v for k, v in parameters.items() if k != "prompt"}
        service_ms: list[float] = []
        api_ms: list[float] = []
        try:
            with serve(create_api(ctx)) as url:
                client = httpx.Client(base_url=url, timeout=60)
                ws_url = url.replace("http", "ws") + "/api/ws"
                with connect(ws_url) as ws:
                    ws.send(json.dumps({"event": "subscribe:session", "data": str(session.id)}))
                    while json.loads(ws.recv(timeout=30))["event"] != "subscribed":
                        pass
                    for _ in range(count):
                        started = time.perf_counter()
                        made = ctx.comfyui.generator.generate(session.id, parameters)
                        for _event in ctx.comfyui.progress.follow([made[0].id], poll=0.05):
                            pass
                        service_ms.append((time.perf_counter() - started) * 1000)
                        started = time.perf_counter()
                        answer = client.post(
                            f"/api/comfyui/sessions/{session.id}/generate",
                            json={"prompt_text": "a red fox", "parameters": rest_parameters},
                        )
                        if answer.status_code != 202:
                            raise SystemExit(f"generate refused: {answer.text}")
                        wanted = answer.json()["data"][0]["id"]
                        while True:
                            message = json.loads(ws.recv(timeout=30))
                            done = message["event"] in ("generation:completed", "generation:failed")
                            if done and message["data"]["generationId"] == wanted:
                                break
                        api_ms.append((time.perf_counter() - started) * 1000)
        finally:
            ctx.close()
    service, api = statistics.median(service_ms), statistics.median(api_ms)
    print(f"\nGenerate → completed, {count} runs each (medians, one process)")
    print(f"  service call (generate + follow)        {service:8.2f} ms")
    print(f"  REST generate → generation:completed    {api:8.2f} ms   ratio {api / service:.3f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--generations", type=int, default=10)
    args = parser.parse_args()
    print(f"load average at start: {load_average()}  (cpus: {os.cpu_count()})")
    bench_chat(args.tokens, args.runs, args.concurrent)
    bench_generate(args.generations)
    print(f"\nload average at end: {load_average()}")


if __name__ == "__main__":
    main()
