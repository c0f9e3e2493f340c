"""Running stored generations on their ComfyUI server (`ctx.comfyui.runner`; design.md,
ComfyUI step 3).

`Runner.run(generation_id, report, should_cancel)`:
open `/ws?clientId=<generation id>`, POST the stored snapshot, store `prompt_id`,
relay progress and previews through `report`, read `/history/{prompt_id}`, download
every output through `/view` into the media folder, and complete the row.

It is idempotent per generation, which is what makes restarts safe: a generation
that already has a `prompt_id` is never posted again — it is followed to its end
through the same client id (ComfyUI sends a prompt's messages to the client id that
queued it) and `/history`. A finished one is left alone.

Polling `/history` takes over whenever the websocket is gone.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.comfyui import inputs, media
from spoonfeeder.comfyui.client import (
    ComfyUIClient,
    ComfyUISocket,
    PreviewImage,
    RetryWindow,
    ServerMessage,
    describe_rejection,
)
from spoonfeeder.comfyui.facts import ServerFacts
from spoonfeeder.comfyui.generations import Generations
from spoonfeeder.comfyui.hooks import CancelRequests, QueueHooks
from spoonfeeder.comfyui.rows import snapshot_of
from spoonfeeder.comfyui.views import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    PROGRESS_TOPIC,
    RUNNING,
    TERMINAL,
    GenerationProgress,
    GenerationView,
)
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import ComfyUIGeneration
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import (
    ComfyUIPromptRejected,
    NotFoundError,
    ProviderError,
    ProviderRequestError,
    ProviderServerError,
    ProviderUnavailable,
    RunAbandoned,
    ValidationError,
)
from spoonfeeder.ids import parse_id, shown
from spoonfeeder.profiles import ProfileService

log = logging.getLogger(__name__)

Report = Callable[[GenerationProgress], None]
ShouldCancel = Callable[[], bool]


OUTPUT_KEYS = ("images", "gifs", "video", "audio")
ALL_CACHED = "Every node comes from ComfyUI's cache: this exact prompt ran before"
SERVED_FROM_CACHE = "served from ComfyUI's cache (nothing was computed again)"
CANCEL_GRACE = 30.0  # seconds to wait for ComfyUI to confirm an interrupt
MAX_POLL_FAILURES = 10  # /history polls in a row that may fail before the run fails


@dataclass
class RunnerTimings:
    receive_timeout: float = 0.2  # how often the loop looks at should_cancel()
    poll_interval: float = 1.0  # /history polling while the websocket is gone
    progress_write_interval: float = 0.5  # DB progress writes are throttled
    # Previews are served by path to a browser that fetches them a little later; they are
    # removed once this old (seconds), not when the next one comes or the run ends.
    preview_ttl: float = 120.0
    # A server answering 5xx or unreachable (a proxy while ComfyUI restarts) is retried,
    # with backoff, for this long before the run fails. Injectable clock for tests.
    retry_seconds: float = 120.0
    # Model file listings and the node classes' digest are re-read this often (seconds).
    facts_ttl: float = 60.0
    # The most one output file may take (COMFYUI_MAX_OUTPUT_BYTES): it is streamed to
    # disk and refused past this, so a broken or hostile server cannot fill the disk.
    max_output_bytes: int = 4 * 1024**3
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class _Outcome:
    status: str  # completed | failed | cancelled
    entry: dict[str, Any] | None = None  # the /history entry when there is one
    error: str | None = None


class Runner:
    def __init__(
        self,
        db: sessionmaker[Session],
        profiles: ProfileService,
        media_root: Path,
        generations: Generations,
        hooks: QueueHooks,
        cancels: CancelRequests,
        timings: RunnerTimings | None = None,
    ) -> None:
        self._db = db
        self._profiles = profiles
        self._media = media_root
        self._generations = generations
        self._hooks = hooks
        self._cancels = cancels
        self.timings = timings or RunnerTimings()
        self.facts = ServerFacts()

    def run(
        self,
        generation_id: uuid.UUID | str,
        report: Report | None = None,
        should_cancel: ShouldCancel | None = None,
        *,
        should_abandon: ShouldCancel | None = None,
    ) -> GenerationView:
        """Run a pending generation — or resume one that has a prompt_id — to its end,
        reporting progress (and previews) through `report` and as `comfyui:progress`
        events. Never raises for ComfyUI failures: they end as status `failed` with a
        message; a cancel ends `cancelled`. Safe to call again for the same generation
        (a finished one is left alone). `should_abandon()` true makes it raise
        RunAbandoned, leaving the row `running` for a later call to resume (a worker
        shutting down)."""
        key = parse_id(generation_id, "generation")

        def cancelled() -> bool:
            return key in self._cancels or bool(should_cancel and should_cancel())

        def relay(progress: GenerationProgress) -> None:
            if self._hooks.events is not None:
                self._hooks.events.publish(PROGRESS_TOPIC, progress.as_event())
            if report is not None:
                report(progress)

        try:
            self._run_to_end(key, relay, cancelled, should_abandon)
        finally:
            self._cancels.discard(key)
        return self._generations.get(key)

    def resume_interrupted(self, *, background: bool = True) -> list[uuid.UUID]:
        """Pick up generations a stopped app left running: each is followed on ComfyUI
        through its prompt_id and completed from /history (or run, if never posted).
        In the background (one daemon thread) unless `background` is False."""
        ids = [g for g in self._generations.interrupted() if self._is_running(g)]
        if not background:
            for generation_id in ids:
                self.run(generation_id)
        elif ids:
            threading.Thread(
                target=lambda: [self.run(g) for g in ids], name="comfyui-resume", daemon=True
            ).start()
        return ids

    def _is_running(self, generation_id: uuid.UUID) -> bool:
        with self._db() as session:
            row = session.get(ComfyUIGeneration, generation_id)
            return row is not None and row.status == RUNNING

    def _run_to_end(
        self,
        generation_id: uuid.UUID,
        report: Report,
        should_cancel: ShouldCancel,
        should_abandon: ShouldCancel | None,
    ) -> str:
        """Run (or resume) a generation to its end; its final status. Raises
        RunAbandoned when `should_abandon()` turns true before the end."""
        with self._db() as session:
            row = session.get(ComfyUIGeneration, generation_id)
            if row is None:
                raise NotFoundError(f"No generation with id {generation_id}")
            if row.status in TERMINAL:
                return row.status
            snapshot, text = snapshot_of(row)
            state = _Run(
                self,
                row.id,
                snapshot,
                text,
                list(row.input_images or []),
                row.prompt_id,
                row.profile_id,
                dict(row.server_info or {}),
                report,
                should_cancel,
                should_abandon or (lambda: False),
            )
        return state.execute()


@dataclass
class _Run:
    """The state of one generation's run; lives for one `Runner.run` call."""

    runner: Runner
    generation_id: uuid.UUID
    snapshot: dict[str, Any]
    snapshot_text: str  # what is posted, byte for byte
    input_images: list[dict[str, Any]]
    prompt_id: str | None
    profile_id: uuid.UUID | None
    server_info: dict[str, Any]
    report: Report
    should_cancel: ShouldCancel
    should_abandon: ShouldCancel
    client: ComfyUIClient | None = None
    socket: ComfyUISocket | None = None
    cancel_sent_at: float | None = None
    interrupt_sent: bool = False
    finished_signal: bool = False
    node_id: str | None = None
    last_write: float = 0.0
    preview_count: int = 0
    last_step: tuple[int, int, float] | None = None  # (value, max, fraction) of the sampler
    # The step progress_state announced as running: an event-4 preview belongs to it (it
    # arrives before that step's `progress` message).
    announced_step: tuple[int, int] | None = None
    cached_nodes: frozenset[str] = frozenset()  # reported in execution_cached
    poll_failures: int = 0

    @property
    def _timings(self) -> RunnerTimings:
        return self.runner.timings

    # ----- the run -----------------------------------------------------------

    def execute(self) -> str:
        if self.prompt_id is None and self.should_cancel():
            return self._finish(_Outcome(CANCELLED, error="Cancelled before it started"))
        try:
            credentials = self.runner._profiles.credentials("comfyui", self.profile_id)
            self.client = ComfyUIClient.for_credentials(credentials, self._retry_window())
            if not self.server_info:
                self.server_info = self.runner.facts.read(
                    self.client, self.snapshot, self.input_images, ttl=self._timings.facts_ttl
                )
            resuming = self.prompt_id is not None
            self._open_socket()
            if not resuming:
                if not self._mark_running():
                    return self._current_status()
                self._upload_inputs()
                queued = self.client.queue_prompt(self.snapshot_text, str(self.generation_id))
                self.prompt_id = queued.prompt_id
                self._store(prompt_id=queued.prompt_id)
                self._say("Queued on ComfyUI", 0.0)
                if queued.node_errors:  # other outputs still run; say which will not
                    skipped = describe_rejection({"node_errors": queued.node_errors}, self.snapshot)
                    self._say(skipped.message.replace("rejected", "will skip part of", 1), None)
            else:
                self._say("Resuming: following the prompt ComfyUI already has", 0.0)
            outcome = self._wait(check_history_first=resuming)
            if outcome.status == COMPLETED and outcome.entry is not None:
                return self._complete(outcome.entry)
            return self._finish(outcome)
        except ComfyUIPromptRejected as exc:
            return self._finish(_Outcome(FAILED, error=exc.message))
        except (ProviderError, ValidationError) as exc:
            return self._finish(_Outcome(FAILED, error=exc.message))
        finally:
            if self.socket is not None:
                with contextlib.suppress(Exception):
                    self.socket.close()
            if self.client is not None:
                self.client.close()

    def _upload_inputs(self) -> None:
        """Send the input images to ComfyUI under the names the snapshot posts (before
        every run: the server may have been restarted, or be another one)."""
        assert self.client is not None
        for image in self.input_images:
            data = inputs.stored_bytes(self.runner._media, image)
            self._say(f"Uploading the input image {image.get('filename') or image['name']}", 0.0)
            answer = self.client.upload_image(data, image["name"], overwrite=True)
            kept = (
                f"{answer.get('subfolder')}/{answer['name']}"
                if answer.get("subfolder")
                else answer.get("name")
            )
            if kept != image["name"]:
                raise ProviderServerError(
                    f"ComfyUI at {self.client.url} stored the input image as {shown(kept)}, not "
                    f"{shown(image['name'])}: the workflow would not find it",
                    provider="comfyui",
                )

    def _retry_window(self) -> RetryWindow:
        timings = self._timings

        def sleep(seconds: float) -> None:
            if self.should_abandon():  # a worker shutting down does not wait out an outage
                raise RunAbandoned(f"generation {self.generation_id} left to a later run")
            timings.sleep(seconds)

        return RetryWindow(timings.retry_seconds, sleep=sleep, clock=timings.clock)

    def _open_socket(self) -> None:
        assert self.client is not None
        try:
            self.socket = self.client.connect(str(self.generation_id))
        except ProviderError as exc:  # HTTP works (system_stats did): poll instead
            log.warning("No websocket for generation %s: %s", self.generation_id, exc)
            self.socket = None

    def _wait(self, *, check_history_first: bool) -> _Outcome:
        """Until ComfyUI says how the prompt ended: websocket first, /history always last."""
        polling = check_history_first or self.socket is None
        next_poll = time.monotonic() if polling else float("inf")
        while True:
            if self.should_abandon():
                raise RunAbandoned(f"generation {self.generation_id} left to a later run")
            if self.cancel_sent_at is None and self.should_cancel():
                self._request_cancel()
                next_poll = time.monotonic()
            if self.socket is not None:
                try:
                    message = self.socket.receive(self._timings.receive_timeout)
                except ProviderError:
                    self.socket = None
                    next_poll = time.monotonic()
                    self._say("Lost the live connection; following the run through /history", None)
                    continue
                if message is not None:
                    outcome = self._on_message(message)
                    if outcome is not None:
                        return outcome
                    if self.finished_signal:
                        next_poll = time.monotonic()
            else:
                time.sleep(min(self._timings.receive_timeout, self._timings.poll_interval))
            if time.monotonic() >= next_poll:
                try:
                    outcome = self._poll()
                    self.poll_failures = 0
                except ProviderUnavailable:
                    # A blip is not the end of a run that may be hours long; a server
                    # gone for good is (MAX_POLL_FAILURES polls in a row).
                    self.poll_failures += 1
                    if self.poll_failures >= MAX_POLL_FAILURES:
                        raise
                    outcome = None
                if outcome is not None:
                    return outcome
                interval = self._timings.poll_interval
                next_poll = time.monotonic() + (
                    interval if self.socket is None or self.finished_signal else interval * 5
                )
            if self.cancel_sent_at and time.monotonic() - self.cancel_sent_at > CANCEL_GRACE:
                return _Outcome(
                    CANCELLED, error="Cancelled (ComfyUI did not confirm the interrupt)"
                )

    def _on_message(self, message: ServerMessage | PreviewImage) -> _Outcome | None:
        if isinstance(message, PreviewImage):
            if message.prompt_id in (None, self.prompt_id):
                self._preview(message)
            return None
        if message.prompt_id is not None and message.prompt_id != self.prompt_id:
            return None
        data = message.data
        if self.cancel_sent_at is not None and message.type in ("execution_start", "executing"):
            self._interrupt()  # it started between our look at the queue and the delete
        if message.type == "execution_start":
            self._say("Running", 0.0)
        elif message.type == "execution_cached" and data.get("nodes"):
            self.cached_nodes = frozenset(str(n) for n in data["nodes"])
            if self._fully_cached():
                self._say(ALL_CACHED, None)
            else:
                count = len(self.cached_nodes)
                plural = "s" if count != 1 else ""
                self._say(f"{count} node{plural} reused from ComfyUI's cache", None)
        elif message.type == "progress_state":
            self.announced_step = _running_step(data)
        elif message.type == "executing":
            node = data.get("node")
            if node is None and message.prompt_id == self.prompt_id:
                self.finished_signal = True  # history is written before this message
                return None
            self.node_id = str(node) if node is not None else None
            self._say(f"Running {self._node_label(self.node_id)}", None)
        elif message.type == "progress":
            value, maximum = int(data.get("value") or 0), int(data.get("max") or 0)
            self.node_id = str(data.get("node") or self.node_id or "") or None
            fraction = value / maximum if maximum else 0.0
            self.last_step = (value, maximum, fraction)
            self._say(
                f"Step {value}/{maximum} · {self._node_label(self.node_id)}",
                fraction,
                step=value,
                max_steps=maximum,
            )
        elif message.type == "execution_error":
            return _Outcome(FAILED, error=self._execution_error(data))
        elif message.type == "execution_interrupted":
            return _Outcome(CANCELLED, error=self._interrupted_text(data))
        return None

    def _poll(self) -> _Outcome | None:
        assert self.client is not None and self.prompt_id is not None
        entry = self.client.history(self.prompt_id)
        if entry is not None:
            return self._outcome_from_history(entry)
        if self._in_queue():
            return None
        # It may have finished between the two calls: look once more before giving up.
        entry = self.client.history(self.prompt_id)
        if entry is not None:
            return self._outcome_from_history(entry)
        if self.cancel_sent_at is not None:
            return _Outcome(CANCELLED, error="Cancelled before ComfyUI started it")
        return _Outcome(
            FAILED,
            error=f"ComfyUI at {self.client.url} no longer knows this prompt "
            f"({self.prompt_id}) — was the server restarted?",
        )

    def _in_queue(self) -> bool:
        assert self.client is not None
        queue = self.client.queue()
        items = [*queue.get("queue_running", []), *queue.get("queue_pending", [])]
        return _holds(items, self.prompt_id)

    def _outcome_from_history(self, entry: dict[str, Any]) -> _Outcome | None:
        status = entry.get("status") or {}
        events = {
            kind: data for kind, data in status.get("messages") or [] if isinstance(data, dict)
        }
        if "execution_error" in events:
            return _Outcome(FAILED, entry, self._execution_error(events["execution_error"]))
        if "execution_interrupted" in events:
            return _Outcome(
                CANCELLED, entry, self._interrupted_text(events["execution_interrupted"])
            )
        if status.get("status_str") == "error":
            return _Outcome(FAILED, entry, "ComfyUI reported an error without details")
        if status.get("completed", True):
            return _Outcome(COMPLETED, entry)
        return None

    def _request_cancel(self) -> None:
        assert self.client is not None
        self.cancel_sent_at = time.monotonic()
        self._say("Cancelling…", None)
        if self.prompt_id is None:
            return
        # Remove it if it still waits; interrupt it only if it is the one running: older
        # ComfyUI versions ignore the prompt_id and would stop whatever runs.
        self.client.delete_from_queue([self.prompt_id])
        if self._is_running_on_server():
            self._interrupt()

    def _is_running_on_server(self) -> bool:
        assert self.client is not None
        return _holds(self.client.queue().get("queue_running", []), self.prompt_id)

    def _interrupt(self) -> None:
        assert self.client is not None
        if not self.interrupt_sent:
            self.interrupt_sent = True
            self.client.interrupt(self.prompt_id)

    def _fully_cached(self) -> bool:
        """Every node of the prompt came from ComfyUI's cache: nothing ran."""
        return bool(self.cached_nodes) and set(self.snapshot) <= self.cached_nodes

    # ----- finishing ----------------------------------------------------------

    def _complete(self, entry: dict[str, Any]) -> str:
        assert self.client is not None
        self.cached_nodes = self.cached_nodes or _cached_in_history(entry)
        self._say("Downloading outputs", 1.0)
        folder = media.generation_folder(self.runner._media, self.generation_id)
        folder.mkdir(parents=True, exist_ok=True)
        outputs: list[dict[str, Any]] = []
        missing: list[str] = []
        for node_id, node_outputs in (entry.get("outputs") or {}).items():
            if not isinstance(node_outputs, dict):
                continue
            for key in OUTPUT_KEYS:
                for item in node_outputs.get(key) or []:
                    if not isinstance(item, dict) or not item.get("filename"):
                        continue
                    try:
                        outputs.append(self._download(str(node_id), key, item, len(outputs)))
                    except ProviderRequestError as exc:  # one file gone: keep the others
                        missing.append(f"{item['filename']} ({exc.message})")
        if missing and not outputs:
            return self._finish(
                _Outcome(FAILED, entry, "No output could be downloaded: " + "; ".join(missing))
            )
        seconds = _run_seconds(entry)
        with transaction(self.runner._db) as session:
            row = session.get(ComfyUIGeneration, self.generation_id)
            if row is None:  # deleted while it ran: keep no files for it
                shutil.rmtree(folder, ignore_errors=True)
                return CANCELLED
            if seconds is None and row.started_at is not None:
                seconds = (utcnow() - row.started_at).total_seconds()
            row.outputs = outputs
            row.status = COMPLETED
            row.progress = 1.0
            row.error = ("Not downloaded: " + "; ".join(missing)) if missing else None
            row.generation_time_seconds = seconds
            row.completed_at = utcnow()
            row.server_info = {**self.server_info, "cached": self._fully_cached()}
        count = len(outputs)
        done = f"Done: {count} file{'s' if count != 1 else ''}"
        if self._fully_cached():
            done = f"{done} · {SERVED_FROM_CACHE}"
        self._say(done, 1.0, status=COMPLETED)
        return COMPLETED

    def _download(self, node_id: str, key: str, item: dict[str, Any], index: int) -> dict[str, Any]:
        assert self.client is not None
        filename = str(item["filename"])
        path = media.output_path(self.runner._media, self.generation_id, index, filename)
        try:
            size = self.client.download(
                filename,
                str(item.get("subfolder") or ""),
                str(item.get("type") or "output"),
                path,
                max_bytes=self._timings.max_output_bytes,
            )
        except ProviderError:
            path.unlink(missing_ok=True)  # never leave half a file behind
            raise
        kind, media_type = media.media_type(filename, key)
        return {
            "path": media.relative(self.runner._media, path),
            "kind": kind,
            "media_type": media_type,
            "node_id": node_id,
            "key": key,
            "filename": filename,
            "subfolder": str(item.get("subfolder") or ""),
            "type": str(item.get("type") or "output"),
            "size": size,
        }

    def _finish(self, outcome: _Outcome) -> str:
        with transaction(self.runner._db) as session:
            row = session.get(ComfyUIGeneration, self.generation_id)
            if row is None:
                return outcome.status
            row.status = outcome.status
            row.error = outcome.error
            row.completed_at = utcnow()
            if self.server_info:
                row.server_info = self.server_info
        self._say(outcome.error or outcome.status, None, status=outcome.status)
        return outcome.status

    def _mark_running(self) -> bool:
        """pending → running, unless someone cancelled it meanwhile."""
        with transaction(self.runner._db) as session:
            result = session.execute(
                update(ComfyUIGeneration)
                .where(
                    ComfyUIGeneration.id == self.generation_id, ComfyUIGeneration.status == PENDING
                )
                .values(
                    status=RUNNING, started_at=utcnow(), server_info=self.server_info, error=None
                )
            )
            if result.rowcount == 1:
                return True
            row = session.get(ComfyUIGeneration, self.generation_id)
            if row is not None and row.status == RUNNING and row.prompt_id is None:
                return True  # a crash between marking and posting: post now
        return False

    def _current_status(self) -> str:
        with self.runner._db() as session:
            row = session.get(ComfyUIGeneration, self.generation_id)
            return row.status if row else CANCELLED

    def _store(self, **values: Any) -> None:
        with transaction(self.runner._db) as session:
            session.execute(
                update(ComfyUIGeneration)
                .where(ComfyUIGeneration.id == self.generation_id)
                .values(**values)
            )

    # ----- progress -----------------------------------------------------------

    def _say(
        self,
        message: str,
        fraction: float | None,
        *,
        status: str = RUNNING,
        step: int | None = None,
        max_steps: int | None = None,
        preview: PreviewImage | None = None,
        preview_path: str | None = None,
    ) -> None:
        now = time.monotonic()
        progress = GenerationProgress(
            self.generation_id,
            status,
            message,
            fraction,
            step,
            max_steps,
            self.node_id,
            self._node_type(self.node_id),
            preview_path,
            preview.mime if preview else None,
            preview.image if preview else None,
            now,
        )
        try:
            self.report(progress)
        except Exception:  # a broken listener must not break the run
            log.exception("Progress report failed for generation %s", self.generation_id)
        # The row's progress after the report: listeners hear of it without waiting on
        # the database, and the writes are spaced out.
        if (
            fraction is not None
            and status == RUNNING
            and (now - self.last_write >= self._timings.progress_write_interval or fraction >= 1.0)
        ):
            self.last_write = now
            self._store(progress=fraction)

    def _preview(self, preview: PreviewImage) -> None:
        self.preview_count += 1
        if preview.node_id:
            self.node_id = preview.node_id
        ext = "png" if preview.mime == "image/png" else "jpg"
        folder = media.preview_folder(self.runner._media)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.generation_id}-{self.preview_count:05d}.{ext}"
        partial = path.with_suffix(".part")
        partial.write_bytes(preview.image)
        partial.replace(path)  # a reader never sees half an image (old ones: prune_previews)
        # Which step it shows: an event-4 preview (it names its prompt) comes before its
        # step's `progress` message, right after progress_state announced that step; an
        # event-1 preview comes after its step's `progress` message.
        value, maximum, fraction = self.last_step or (None, None, None)
        if preview.prompt_id is not None and self.announced_step is not None:
            value, maximum = self.announced_step
            fraction = value / maximum if maximum else None
        words = f"Step {value}/{maximum}" if value is not None else "Preview"
        self._say(
            f"{words} · {self._node_label(self.node_id)}",
            fraction,
            step=value,
            max_steps=maximum,
            preview=preview,
            preview_path=media.relative(self.runner._media, path),
        )

    # ----- wording -------------------------------------------------------------

    def _node_type(self, node_id: str | None) -> str | None:
        node = self.snapshot.get(node_id or "") if node_id else None
        return node.get("class_type") if isinstance(node, dict) else None

    def _node_label(self, node_id: str | None, node_type: str | None = None) -> str:
        if not node_id:
            return "workflow"
        node = self.snapshot.get(node_id) if isinstance(self.snapshot.get(node_id), dict) else {}
        class_type = node_type or node.get("class_type") or "?"
        title = (node.get("_meta") or {}).get("title")
        if title and title != class_type:
            return f"node {node_id} “{title}” ({class_type})"
        return f"node {node_id} ({class_type})"

    def _execution_error(self, data: dict[str, Any]) -> str:
        node_id = str(data.get("node_id") or "") or None
        where = self._node_label(node_id, data.get("node_type"))
        kind = data.get("exception_type") or "Error"
        text = str(data.get("exception_message") or "").strip() or "no message"
        return f"ComfyUI failed in {where}: {kind}: {text}"

    def _interrupted_text(self, data: dict[str, Any]) -> str:
        node_id = str(data.get("node_id") or "") or None
        return f"Interrupted in {self._node_label(node_id, data.get('node_type'))}"


def _running_step(data: dict[str, Any]) -> tuple[int, int] | None:
    """The sampling step a progress_state message says is running (value, max), if any:
    a running node with more than one step (other nodes report 0..1)."""
    for state in (data.get("nodes") or {}).values():
        if not isinstance(state, dict) or state.get("state") != "running":
            continue
        try:
            value, maximum = int(state.get("value") or 0), int(state.get("max") or 0)
        except (TypeError, ValueError):
            continue
        if maximum > 1:
            return value, maximum
    return None


def _cached_in_history(entry: dict[str, Any]) -> frozenset[str]:
    for kind, data in (entry.get("status") or {}).get("messages") or []:
        if kind == "execution_cached" and isinstance(data, dict):
            return frozenset(str(n) for n in data.get("nodes") or [])
    return frozenset()


def _holds(items: list[Any], prompt_id: str | None) -> bool:
    """Whether a /queue list holds this prompt (its items are [number, prompt_id, …])."""
    return any(len(item) > 1 and item[1] == prompt_id for item in items)


def _run_seconds(entry: dict[str, Any]) -> float | None:
    """ComfyUI's own run time (execution_start → end), which excludes time in its queue."""
    stamps: dict[str, float] = {}
    for kind, data in (entry.get("status") or {}).get("messages") or []:
        if isinstance(data, dict) and isinstance(data.get("timestamp"), int | float):
            stamps[kind] = data["timestamp"]
    start = stamps.get("execution_start")
    end = stamps.get("execution_success") or stamps.get("execution_error")
    if start is None or end is None:
        return None
    return max(0.0, (end - start) / 1000)
