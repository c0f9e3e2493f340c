"""What Spoon Feeder adds to a streamed chat reply, measured against the SDK alone.

    python bench/chat_overhead.py [--tokens 500] [--runs 25] [--app-runs 5] [--fakes process]

For each provider a local fake server (the test fakes, real wire protocol) streams
`--tokens` tokens as fast as it can: in a child process by default, as a real upstream
is never in the app's process (`--fakes thread` serves them from threads of this
process, sharing its GIL, as earlier versions of this bench did). In the same run,
interleaved, we time:

- direct:  the official SDK called directly, the way a script would;
- layer:   the same SDK through Spoon Feeder's provider class (`stream_chat`);
- service: the chat service (`ChatService.send`) on SQLite: the user message and the
           reply's row written before the request, the reply saved after it;
- app:     the whole app — gradio_client → /chat → chat service → provider → fake,
           including saving both messages to SQLite;
- gradio:  a bare Gradio endpoint that streams the direct SDK call, through
           gradio_client: the floor any Gradio app pays, so app − gradio is ours.

and print medians of time to first token (TTFT) and total time, with the ratios.
Targets (issue 3): layer total ≤ 1.05× direct, layer TTFT ≤ direct + 2 ms.

The fakes share the machine's CPUs with the client side (and, with `--fakes thread`, its
GIL); on a busy machine single runs swing by ±20 %. The provider layer is therefore
also shown by the best (minimum) of its runs, the estimate least affected by other
load, beside the median. The load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import anthropic
import ollama
import openai
from google import genai
from google.genai import types as genai_types

from spoonfeeder.chat import ChatTarget
from spoonfeeder.config import Settings
from spoonfeeder.context import AppContext
from spoonfeeder.profiles import Credentials
from spoonfeeder.providers.base import ChatMessage, ChatOptions
from spoonfeeder.providers.registry import build_provider
from tests.fakes.anthropic_server import DEFAULT_MODELS as CLAUDE_MODELS
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import free_port, serve

PROMPT = "Count to five hundred."
CLAUDE = CLAUDE_MODELS[0]
KEY = "bench-key"


@dataclass
class Case:
    provider: str
    model: str
    fake: object
    base_path: str  # appended to the fake's URL to make the provider's base URL
    direct: Callable[[str], Iterator[str]]  # base URL -> text deltas, SDK only


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _serve_forever(app: object, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def wait_for_port(port: int, child: Any, seconds: float = 15) -> None:
    """Until something listens on `port`, or the child that should serve it dies."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline or not child.is_alive():
                raise RuntimeError("server did not start") from None
            time.sleep(0.02)


@contextmanager
def serve_in_child(app: object) -> Iterator[str]:
    """Serve `app` from a forked child process, like a real upstream: its own GIL."""
    port = free_port()
    child = multiprocessing.get_context("fork").Process(
        target=_serve_forever, args=(app, port), daemon=True
    )
    child.start()
    wait_for_port(port, child)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.join(5)


def openai_direct(url: str) -> Callable[[], Iterator[str]]:
    client = openai.OpenAI(base_url=url, api_key=KEY)

    def run() -> Iterator[str]:
        with client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content

    return run


def anthropic_direct(url: str) -> Callable[[], Iterator[str]]:
    client = anthropic.Anthropic(base_url=url, api_key=KEY)

    def run() -> Iterator[str]:
        with client.messages.stream(
            model=CLAUDE,
            max_tokens=4096,
            messages=[{"role": "user", "content": PROMPT}],
        ) as stream:
            yield from stream.text_stream

    return run


def gemini_direct(url: str) -> Callable[[], Iterator[str]]:
    client = genai.Client(api_key=KEY, http_options=genai_types.HttpOptions(base_url=url))

    def run() -> Iterator[str]:
        for chunk in client.models.generate_content_stream(
            model="gemini-2.5-flash", contents=PROMPT
        ):
            if chunk.text:
                yield chunk.text

    return run


def ollama_direct(url: str) -> Callable[[], Iterator[str]]:
    client = ollama.Client(host=url)

    def run() -> Iterator[str]:
        for part in client.chat(
            model="llama3.2:latest", messages=[{"role": "user", "content": PROMPT}], stream=True
        ):
            if part.message.content:
                yield part.message.content

    return run


def layer_run(provider: str, url: str, model: str) -> Callable[[], Iterator[str]]:
    chat = build_provider(Credentials(provider, url, KEY, {}))
    options = ChatOptions(max_tokens=4096 if provider == "anthropic" else None)

    def run() -> Iterator[str]:
        for chunk in chat.stream_chat(model, [ChatMessage("user", PROMPT)], options):
            if chunk.text:
                yield chunk.text

    return run


def timed(run: Callable[[], Iterator[str]]) -> tuple[float, float, int]:
    """(ms to the first delta, ms in total, characters received)."""
    deltas = run()  # a generator: nothing of the run happens before the first next()
    started = time.perf_counter()
    first = None
    size = 0
    for delta in deltas:
        if first is None:
            first = time.perf_counter()
        size += len(delta)
    end = time.perf_counter()
    return ((first or end) - started) * 1000, (end - started) * 1000, size


def median_of(samples: list[tuple[float, float, int]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def service_run(ctx: AppContext, case: Case, url: str) -> Callable[[], Iterator[str]]:
    """The chat service: saves the user message and the reply (SQLite) around the stream.

    Each run gets a conversation made beforehand, so the history does not grow and the
    conversation's creation is not timed (the UI makes one only for a first message).
    """
    ctx.profiles.save_setting(case.provider, api_key=KEY, endpoint_url=url + case.base_path)
    target = ChatTarget(case.provider, case.model)
    options = ChatOptions(max_tokens=4096 if case.provider == "anthropic" else None)
    fresh: list[uuid.UUID] = []

    def run() -> Iterator[str]:
        reply = ctx.chat.send(fresh.pop(), PROMPT, target, options)
        yield from reply
        reply.wait(10)

    def prepared() -> Iterator[str]:
        fresh.append(ctx.chat.create_conversation().id)
        return run()

    return prepared


def bench_provider(
    case: Case, url: str, runs: int, ctx: AppContext
) -> dict[str, tuple[float, float]]:
    direct = case.direct(url + case.base_path)
    layer = layer_run(case.provider, url + case.base_path, case.model)
    service = service_run(ctx, case, url)
    for warm in (direct, layer, service):  # connections, imports, first-call caches
        timed(warm)
    results: dict[str, list[tuple[float, float, int]]] = {"direct": [], "layer": [], "service": []}
    sizes = set()
    for _ in range(runs):  # interleaved, so drift hits both sides alike
        for name, run in (("direct", direct), ("layer", layer), ("service", service)):
            sample = timed(run)
            sizes.add(sample[2])
            results[name].append(sample)
    if len(sizes) != 1:
        raise SystemExit(f"{case.provider}: replies differ in length {sizes}; the bench is broken")
    out = {name: median_of(samples) for name, samples in results.items()}
    for name, samples in results.items():
        out[name + ":best"] = (min(s[0] for s in samples), min(s[1] for s in samples))
    return out


def bench_app(cases: list[Case], urls: dict[str, str], runs: int) -> dict[str, tuple[float, float]]:
    """Through gradio_client → /chat → the app, beside the SDK directly, per provider."""
    import gradio as gr
    from gradio_client import Client

    from ui.app import build_demo

    data = Path(tempfile.mkdtemp(prefix="sf-bench-"))
    ctx = AppContext.create(
        Settings(
            _env_file=None,
            data_dir=data,
            database_url=f"sqlite:///{data / 'b.db'}",
            encryption_key="22" * 32,
            worker_threads=0,
        )
    )
    for case in cases:
        ctx.profiles.save_setting(
            case.provider, api_key=KEY, endpoint_url=urls[case.provider] + case.base_path
        )
    demo = build_demo(ctx)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)

    # The floor: the same queue and client, the SDK streaming straight out of the endpoint.
    sdk = {c.provider: c.direct(urls[c.provider] + c.base_path) for c in cases}

    def bare(provider: str) -> Iterator[str]:
        yield from sdk[provider]()

    with gr.Blocks() as floor:
        gr.api(bare, api_name="bare")
    floor.queue(default_concurrency_limit=8)
    floor_port = free_port()
    floor.launch(
        server_name="127.0.0.1", server_port=floor_port, prevent_thread_lock=True, quiet=True
    )
    floor_client = Client(f"http://127.0.0.1:{floor_port}/", verbose=False)
    out: dict[str, tuple[float, float]] = {}
    try:
        for case in cases:
            max_tokens = 4096 if case.provider == "anthropic" else None

            def via_app(case: Case = case, max_tokens: int | None = max_tokens) -> Iterator[str]:
                job = client.submit(
                    case.provider,
                    case.model,
                    PROMPT,
                    "",
                    None,
                    "",
                    None,
                    max_tokens,
                    api_name="/chat",
                )
                yield from job

            def via_floor(case: Case = case) -> Iterator[str]:
                yield from floor_client.submit(case.provider, api_name="/bare")

            direct = sdk[case.provider]
            timed(via_app)
            timed(via_floor)
            timed(direct)
            app_samples, floor_samples, direct_samples = [], [], []
            for _ in range(runs):
                app_samples.append(timed(via_app))
                floor_samples.append(timed(via_floor))
                direct_samples.append(timed(direct))
            out[case.provider] = median_of(app_samples)
            out[case.provider + ":gradio"] = median_of(floor_samples)
            out[case.provider + ":direct"] = median_of(direct_samples)
    finally:
        floor.close()
        demo.close()
        ctx.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--app-runs", type=int, default=5)
    parser.add_argument(
        "--fakes",
        choices=["process", "thread"],
        default="process",
        help="serve the fakes from child processes (default) or threads of this process",
    )
    args = parser.parse_args()
    serve_fake: Callable[[object], AbstractContextManager[str]] = (
        serve_in_child if args.fakes == "process" else serve
    )
    tokens = [f"tok{i} " for i in range(args.tokens)]
    cases = [
        Case(
            "openai",
            "gpt-4o-mini",
            FakeOpenAI(key=KEY, tokens=tokens, models=["gpt-4o-mini"]),
            "/v1",
            openai_direct,
        ),
        Case(
            "anthropic",
            CLAUDE,
            FakeAnthropic(key=KEY, tokens=tokens),
            "",
            anthropic_direct,
        ),
        Case(
            "gemini",
            "gemini-2.5-flash",
            FakeGemini(key=KEY, tokens=tokens, models=["gemini-2.5-flash"]),
            "",
            gemini_direct,
        ),
        Case("ollama", "llama3.2:latest", FakeOllama(tokens=tokens), "", ollama_direct),
    ]
    print(
        f"{args.tokens} tokens per reply, median (and best) of {args.runs} interleaved runs "
        f"({args.app_runs} through the app); fakes served from "
        f"{'child processes' if args.fakes == 'process' else 'threads of this process'}; "
        f"load average {load_average()}\n"
    )
    header = (
        f"{'provider':<10} {'direct TTFT':>12} {'layer TTFT':>11} {'added':>8} "
        f"{'direct total':>13} {'layer total':>12} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    with ExitStack() as stack:
        urls = {case.provider: stack.enter_context(serve_fake(case.fake.app)) for case in cases}
        # (side, statistic) -> [worst total ratio, worst added TTFT]
        worst = {key: [0.0, 0.0] for key in (("layer", ""), ("layer", ":best"), ("service", ""))}
        data = Path(tempfile.mkdtemp(prefix="sf-bench-service-"))
        ctx = AppContext.create(
            Settings(
                _env_file=None,
                data_dir=data,
                database_url=f"sqlite:///{data / 'service.db'}",
                encryption_key="33" * 32,
                worker_threads=0,
            )
        )
        stack.callback(ctx.close)
        for case in cases:
            r = bench_provider(case, urls[case.provider], args.runs, ctx)
            for side, stat, name in (
                ("layer", "", case.provider),
                ("layer", ":best", "  best"),
                ("service", "", "  service"),
            ):
                (d_ttft, d_total), (l_ttft, l_total) = r["direct" + stat], r[side + stat]
                ratio, added = l_total / d_total, l_ttft - d_ttft
                key = (side, stat)
                worst[key] = [max(worst[key][0], ratio), max(worst[key][1], added)]
                print(
                    f"{name:<10} {d_ttft:>9.2f} ms {l_ttft:>8.2f} ms {added:>+5.2f} ms "
                    f"{d_total:>10.1f} ms {l_total:>9.1f} ms {ratio:>6.3f}×"
                )
        for key, label in (
            (("layer", ""), "provider layer, medians"),
            (("layer", ":best"), "provider layer, best runs"),
            (("service", ""), "chat service with SQLite, medians"),
        ):
            print(
                f"\n{label}: worst total ratio {worst[key][0]:.3f}× (target ≤ 1.05×), "
                f"worst added TTFT {worst[key][1]:+.2f} ms (target ≤ 2 ms)",
                end="",
            )
        print()

        app = bench_app(cases, urls, args.app_runs)
        print(
            "\nend to end through gradio_client: SDK direct; a bare Gradio endpoint streaming "
            "the SDK;\nthe app's /chat (chat service, provider layer, both messages saved to "
            "SQLite)\n"
        )
        header = (
            f"{'provider':<10} {'direct TTFT':>12} {'gradio TTFT':>12} {'app TTFT':>9} "
            f"{'direct total':>13} {'gradio total':>13} {'app total':>10} {'app/gradio':>11}"
        )
        print(header)
        print("-" * len(header))
        for case in cases:
            (d_ttft, d_total), (g_ttft, g_total), (a_ttft, a_total) = (
                app[case.provider + ":direct"],
                app[case.provider + ":gradio"],
                app[case.provider],
            )
            print(
                f"{case.provider:<10} {d_ttft:>9.2f} ms {g_ttft:>9.1f} ms {a_ttft:>6.1f} ms "
                f"{d_total:>10.1f} ms {g_total:>10.1f} ms {a_total:>7.1f} ms "
                f"{a_total / g_total:>10.2f}×"
            )
    print("\nload average at the end: " + load_average())


if __name__ == "__main__":
    main()
