"""How long a ComfyUI `progress` message takes to reach whoever is watching.

    python bench/progress_latency.py [--runs 20] [--frame-delay 0.05] [--database-url URL]
                                     [--skip-gradio]

A fake ComfyUI (the test fake: real HTTP and websocket protocol, the captured
transcripts) notes `time.perf_counter()` just before it sends each `progress` frame.
Generations run the way the app runs them — `generate()` → a `comfyui.generate` task →
a worker thread → websocket → runner — and we time, in the same process:

- service: frame sent → the `comfyui:progress` event delivered to an EventBus
  subscriber (what the UI's generator waits on);
- gradio:  frame sent → `gradio_client` receiving the ComfyUI tab's streamed update
  that shows that step (the whole app: queue, worker, bus, Gradio generator, SSE).

Targets (issue 5): p95 under 50 ms at the service layer and under 250 ms through
Gradio. Frames are spaced by `--frame-delay` (a real server sends one per sampler step,
~1.5 s apart on a CPU) so each is measured on its own rather than in a burst.
Everything shares this process's GIL and the machine's CPUs: on a busy machine the
tail swings from run to run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from spoonfeeder.context import AppContext
from spoonfeeder.events import Event
from tests.conftest import make_settings
from tests.fakes.comfyui_server import FakeComfyUI
from tests.fakes.server import serve
from tests.launch import launched

CKPT = "tiny-random-sd15.safetensors"
PARAMS = {"prompt": "latency", "checkpoint": CKPT, "width": 64, "height": 64, "steps": 3}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, samples: list[float], target_ms: float) -> str:
    ms = [s * 1000 for s in samples]
    p95 = percentile(ms, 0.95)
    verdict = "ok" if p95 < target_ms else "OVER"
    return (
        f"{name:<9}{len(ms):>6}{statistics.median(ms):>9.1f}{p95:>9.1f}{max(ms):>9.1f}"
        f"{target_ms:>9.0f}  {verdict}"
    )


class Stopwatch:
    """Receipt times of comfyui:progress step events, by (generation id, step)."""

    def __init__(self) -> None:
        self.received: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        now = time.perf_counter()
        step = event.data.get("step")
        if step is not None:
            with self.lock:
                self.received.setdefault((event.data["generation_id"], int(step)), now)


def service_layer(ctx: AppContext, fake: FakeComfyUI, runs: int) -> list[float]:
    watch = Stopwatch()
    samples: list[float] = []
    session = ctx.comfyui.sessions.create("bench: service")
    with ctx.events.subscribe("comfyui:progress", callback=watch):
        for _ in range(runs):
            [made] = ctx.comfyui.generator.generate(session.id, PARAMS)
            for _event in ctx.comfyui.progress.follow([made.id], poll=0.5, timeout=60):
                pass
            done = ctx.comfyui.generations.get(made.id)
            assert done.status == "completed", done.error
            for prompt_id, step, sent in fake.progress_sent:
                if prompt_id == done.prompt_id:
                    samples.append(watch.received[(str(done.id), step)] - sent)
    return samples


def gradio_layer(ctx: AppContext, fake: FakeComfyUI, runs: int) -> list[float]:
    from gradio_client import Client

    samples: list[float] = []
    with launched(ctx) as url:
        # Updates, not files: a browser shows the text at once and fetches the preview
        # image on its own; downloading it here would be counted against the next step.
        client = Client(url, verbose=False, download_files=False)
        form = [
            "latency",  # prompt
            "",  # negative
            64,
            64,
            3,
            7.0,
            "euler",
            "normal",
            1234,
            CKPT,
            1,
            {"headers": ["LoRA", "Model strength", "CLIP strength"], "data": [["", "", ""]]},
            1,  # batch count
        ]
        for _ in range(runs):
            already = len(fake.progress_sent)
            seen: dict[int, float] = {}
            job = client.submit("", "", "", *form, api_name="/comfyui_generate")
            for output in job:
                now = time.perf_counter()
                # the progress text, wherever the tab puts it among its outputs
                text = " ".join(item for item in output if isinstance(item, str))
                for step in (1, 2, 3):
                    if f"Step {step}/3" in text:
                        seen.setdefault(step, now)
            assert job.status().success, job.result()
            for _prompt_id, step, sent in fake.progress_sent[already:]:
                if step in seen:
                    samples.append(seen[step] - sent)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="generations per layer (3 steps each)")
    parser.add_argument("--frame-delay", type=float, default=0.05, help="seconds between frames")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--skip-gradio", action="store_true")
    args = parser.parse_args()

    fake = FakeComfyUI(delay=args.frame_delay)
    fake.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT])
    data = Path(tempfile.mkdtemp(prefix="sf-bench-"))
    database = args.database_url or f"sqlite:///{data / 'bench.db'}"
    with serve(fake.app) as url:
        ctx = AppContext.create(make_settings(database, data / "data", comfyui_url=url))
        ctx.start_workers(2, poll_interval=0.05)
        try:
            service = service_layer(ctx, fake, args.runs)
            gradio = [] if args.skip_gradio else gradio_layer(ctx, fake, args.runs)
        finally:
            ctx.close()

    backend = database.split(":", 1)[0]
    print(
        f"\nComfyUI progress latency, {args.runs} generations × 3 steps per layer, "
        f"frames {args.frame_delay * 1000:.0f} ms apart, {backend}, {os.cpu_count()} CPUs"
    )
    print(f"{'layer':<9}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'target':>9}")
    print(summary("service", service, 50))
    if gradio:
        print(summary("gradio", gradio, 250))


if __name__ == "__main__":
    main()
