"""The ComfyUI tab's live events: following a session's runs, and what starts them —
Generate, a sweep, an exact re-run — and Interrupt. Each is a generator streaming
frames through LiveOutputs (ui/common.py), whose rules keep the browser's values sane."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from spoonfeeder.comfyui.views import TERMINAL, SweepView
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from ui.comfyui_format import placeholder, run_summary
from ui.comfyui_updates import (
    media_path,
    need,
    outputs_of,
    request_parameters,
    session_results,
    session_update,
)
from ui.common import LiveOutputs, NewestView, shows_errors

if TYPE_CHECKING:
    from ui.comfyui import ComfyView

# A page's follower gives up after this long without the runs ending (they go on).
QUIET_LIMIT_SECONDS = 30 * 60
# How the live events run: their frames show no spinner, and a new one may start while an
# older one still runs (it stops itself: the newest follower wins).
LIVE: dict[str, Any] = {"show_progress": "hidden", "trigger_mode": "multiple"}


class Follow:
    """Following a session's queued and running generations, for every event that does:
    one NewestView, so the newest follower of a page (its `key`) wins."""

    def __init__(self, ctx: AppContext, view: ComfyView) -> None:
        self.ctx, self.view = ctx, view
        self._followers = NewestView()

        @shows_errors
        def follow_comfyui_session(session_id: str | None, key: str = ""):
            """Follow a session's queued and running generations to their end: progress
            text as it happens, then the gallery and table (what a page does after a
            reload)."""
            yield from self.frames(session_id or None, key, LiveOutputs(view.followed()))

        self.handler = follow_comfyui_session

    def frames(
        self, session_id: str | None, key: str, live: LiveOutputs, last: dict | None = None
    ) -> Iterator[tuple]:
        """Live progress of the session's queued and running generations until all have
        ended; stops early when a newer follower of this page (`key`) starts, or the page
        goes away. On the way `results_tick` changes whenever the gallery or the table
        should be read again (a browser does so in its own event); the gallery and table
        themselves come only in the last frame (`last` adds to it), for scripts — see
        LiveOutputs for why they are not in the frames between."""
        ctx, view = self.ctx, self.view
        unfinished = ctx.comfyui.generations.unfinished(session_id) if session_id else []
        ids = [str(g) for g in unfinished]
        if not ids:
            results = session_results(ctx, view, session_id)
            yield live.frame({view.running: [], **results, **(last or {})})
            return
        ticket = self._followers.start(key)
        try:
            tick = _Ticks(session_id)
            yield live.frame(
                {
                    view.progress: f"Following {len(ids)} generation(s)…",
                    view.running: ids,
                    view.results_tick: tick(),
                }
            )
            for update in self._progress(ids, tick):
                if not self._followers.is_newest(key, ticket):
                    return  # a newer follower has taken over
                yield live.frame(update)
            finished = [ctx.comfyui.generations.get(gid) for gid in ids]
            yield live.frame(
                {
                    view.progress: run_summary(finished),
                    view.running: [],
                    view.results_tick: tick(),
                    **session_results(ctx, view, session_id),
                    **(last or {}),
                }
            )
        finally:
            self._followers.end(key, ticket)

    def _progress(self, ids: list[str], tick: _Ticks) -> Iterator[dict[Any, Any]]:
        """One update per progress event of the runs `ids` until all have ended; {} now
        and then without one, to hand control back (Gradio can only stop a generator
        between two yields)."""
        view = self.view
        done: set[str] = set()
        started: set[str] = set()
        events = self.ctx.comfyui.progress.follow(ids, timeout=QUIET_LIMIT_SECONDS, heartbeat=True)
        for event in events:
            if event is None:
                yield {}
                continue
            gid = event["generation_id"]
            update: dict[Any, Any] = {
                view.progress: f"**{min(len(done) + 1, len(ids))} of {len(ids)}** · "
                f"{event.get('message', '')}",
            }
            if event.get("preview_path"):
                # A preview already pruned is skipped: the next one comes.
                with contextlib.suppress(Exception):
                    update[view.preview] = media_path(self.ctx, event["preview_path"])
            if event.get("status") in TERMINAL:
                done.add(gid)
                update[view.results_tick] = tick()
            elif gid not in started:  # it started: its row says so at once
                started.add(gid)
                update[view.results_tick] = tick()
            yield update

    def started(self, session_id: str, key: str, live: LiveOutputs) -> Iterator[tuple]:
        """The frames of an event that has just started work in `session_id`: the notice
        cleared, then the follower's, the session list (with its counts) in the last."""
        yield live.frame({self.view.notice: ""})
        last = {self.view.session: session_update(self.ctx, session_id)}
        yield from self.frames(session_id, key, live, last)


class _Ticks:
    """New values for `results_tick`: each tells the browser to re-read the gallery and
    table (in its own event) of the session before the first "|"."""

    def __init__(self, session_id: str | None) -> None:
        self._prefix = f"{session_id}|{uuid.uuid4().hex[:8]}"
        self._count = 0

    def __call__(self) -> str:
        self._count += 1
        return f"{self._prefix}|{self._count}"


def listen_follow(follow: Follow) -> None:
    """A follower's results tick: the browser reads the gallery and table again."""
    ctx, view = follow.ctx, follow.view

    @shows_errors
    def refresh_results(tick_value: str | None):
        """Read the session's gallery page and table again (a follower said so)."""
        session_id = (tick_value or "").split("|")[0] or None
        return {
            view.session: session_update(ctx, session_id),
            **session_results(ctx, view, session_id),
        }

    view.results_tick.change(
        refresh_results,
        view.results_tick,
        [view.session, *view.gallery_outputs()],
        api_visibility="private",
        show_progress="hidden",
    )


def listen_generate(follow: Follow) -> None:
    ctx, view = follow.ctx, follow.view

    @shows_errors
    def generate(
        session_id: str | None,
        server_id: str | None,
        workflow_id: str | None,
        prompt_text: str,
        negative_prompt: str,
        width_: float | None,
        height_: float | None,
        steps_: float | None,
        cfg_: float | None,
        sampler_name: str | None,
        scheduler_: str | None,
        seed_: float | None,
        checkpoint_: str | None,
        batch_size_: float | None,
        loras_: Any,
        count: float | None = 1,
        denoise_value: float | None = None,
        image: str | None = None,
        key: str = "",
    ):
        """Generate: `count` generations of the form (seeds counting up); `image` is an
        input image for a workflow with Load Image; then follow them to their end. Without
        a session, one named after the prompt is made — only if nothing is refused."""
        form_vals = [prompt_text, negative_prompt, width_, height_, steps_, cfg_, sampler_name]
        form_vals += [scheduler_, seed_, checkpoint_, batch_size_, loras_]
        made = ctx.comfyui.generator.generate(
            session_id or None,
            request_parameters(ctx, workflow_id, form_vals, denoise_value, image),
            workflow_id=workflow_id or None,
            batch_count=int(count or 1),
            new_session=None if session_id else (form_vals[0] or ""),  # only if accepted
            profile_id=server_id or None,
        )
        live = LiveOutputs(view.generate_outputs())
        yield from follow.started(str(made[0].session_id), key, live)

    inputs = [view.session, view.server, view.workflow, *view.form(), view.batch_count]
    view.generate.click(
        generate,
        [*inputs, view.denoise, view.input_image, view.page],
        view.generate_outputs(),
        api_name="comfyui_generate",
        **LIVE,
    )


def listen_sweep(follow: Follow) -> None:
    ctx, view = follow.ctx, follow.view

    @shows_errors
    def run_sweep(
        session_id: str | None,
        server_id: str | None,
        workflow_id: str | None,
        a1: str,
        v1: str,
        a2: str | None,
        v2: str,
        prompt_text: str,
        negative_prompt: str,
        width_: float | None,
        height_: float | None,
        steps_: float | None,
        cfg_: float | None,
        sampler_name: str | None,
        scheduler_: str | None,
        seed_: float | None,
        checkpoint_: str | None,
        batch_size_: float | None,
        loras_: Any,
        denoise_value: float | None = None,
        image: str | None = None,
        key: str = "",
    ):
        """Sweep one or two parameters (`a1` over `v1`, `a2` over `v2`) on one seed; then
        follow the cells and show the labelled grid, as a gallery and as one image."""
        form_vals = [prompt_text, negative_prompt, width_, height_, steps_, cfg_, sampler_name]
        form_vals += [scheduler_, seed_, checkpoint_, batch_size_, loras_]
        sweep = ctx.comfyui.generator.sweep(
            session_id or None,
            request_parameters(ctx, workflow_id, form_vals, denoise_value, image),
            [(a1, v1)] + ([(a2, v2)] if a2 else []),
            workflow_id=workflow_id or None,
            new_session=None if session_id else (form_vals[0] or ""),
            profile_id=server_id or None,
        )
        live = LiveOutputs(view.sweep_outputs())
        yield from follow.started(str(sweep.generations[0].session_id), key, live)
        # Then the grid (its cells' states as they are now, had a newer follower taken over)
        stored = ctx.comfyui.generations
        yield live.frame(
            {
                view.sweep_grid: sweep_gallery(ctx, stored.sweep_grid(sweep.id)),
                view.sweep_picture: str(stored.sweep_image(sweep.id)),
            }
        )

    axes = [view.axis1, view.values1, view.axis2, view.values2]
    inputs = [view.session, view.server, view.workflow, *axes, *view.form()]
    view.sweep.click(
        run_sweep,
        [*inputs, view.denoise, view.input_image, view.page],
        view.sweep_outputs(),
        api_name="comfyui_sweep",
        **LIVE,
    )


def sweep_gallery(ctx: AppContext, sweep: SweepView) -> gr.Gallery:
    """One image per cell, in rows of the last axis's values: a labelled grid."""
    items = []
    for g in sweep.generations:
        images, _, _, _ = outputs_of(ctx, [g])
        if images:
            items.append((images[0][0], g.label))
        else:  # failed or cancelled: the cell stays, saying so
            items.append((placeholder(), f"{g.label} — {g.status}"))
    return gr.Gallery(value=items, columns=len(sweep.axes[-1][1]))


def listen_rerun(follow: Follow) -> None:
    """Re-run a generation exactly (and follow it); Interrupt what the page follows."""
    ctx, view = follow.ctx, follow.view

    @shows_errors
    def rerun_exactly(generation_id: str | None, session_id: str | None, key: str):
        g = ctx.comfyui.generator.rerun_exact(need(generation_id, "generation"))
        target = str(g.session_id) if g.session_id else session_id
        live = LiveOutputs(view.rerun_outputs())
        yield from follow.frames(target, key, live, {view.session: session_update(ctx, target)})

    @shows_errors
    def interrupt(following: list[str] | None):
        if not following:
            raise ValidationError("Nothing is running from this page")
        ctx.comfyui.generations.cancel_unfinished(following)
        return "Interrupting…"

    view.rerun.click(
        rerun_exactly,
        [view.selected, view.session, view.page],
        view.rerun_outputs(),
        api_name="rerun_exactly",
        **LIVE,
    )
    view.interrupt.click(interrupt, view.running, view.progress, api_name="comfyui_interrupt")
