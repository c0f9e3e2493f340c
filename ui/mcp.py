"""The MCP server's tools: a deliberate set, for agents, over the same services.

Gradio serves them at /gradio_api/mcp/ (`mcp_server=True` on the mounted app). Gradio
would list every public endpoint of the page as a tool; `only_these_are_tools` marks
the UI's own events as not tools, so an agent sees these and nothing else. Each tool's
docstring (with its Args) is its description and its type hints are its schema.
"""

from __future__ import annotations

import functools
import inspect
import json
import warnings
from collections.abc import Callable
from typing import Any, Literal

import gradio as gr
from gradio.mcp import tool as mcp_tool

from spoonfeeder.api.live import outputs_of
from spoonfeeder.chat import chat_options
from spoonfeeder.comfyui.views import GenerationView
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from spoonfeeder.history import ConversationFilters, GenerationFilters
from spoonfeeder.serialize import jsonable
from ui.common import acting, shows_errors

# Gradio warns of a gr.State input among the tools; the UI events that have one are
# marked as not tools (only_these_are_tools), and none of the tools has one.
warnings.filterwarnings("ignore", message="This MCP server includes a tool that has a gr.State")

MAX_WAIT_SECONDS = 1800.0
NOT_A_TOOL = "ui-event"  # Gradio lists a function as an MCP tool unless it says otherwise


def generation_json(generation: GenerationView) -> dict[str, Any]:
    """A generation for an agent: its record, and its outputs with the URLs to fetch."""
    data = jsonable(generation)
    data["outputs"] = outputs_of(generation)
    return data


def register_tools(ctx: AppContext) -> list[Callable[..., Any]]:
    """Add the tools to the Blocks being built; returns their functions."""
    comfyui = ctx.comfyui

    def wait_for(generations: list[GenerationView], wait_seconds: float) -> list[dict[str, Any]]:
        if wait_seconds > 0:
            ids = [g.id for g in generations]
            for _ in comfyui.progress.follow(ids, timeout=min(wait_seconds, MAX_WAIT_SECONDS)):
                pass
        return [generation_json(comfyui.generations.get(g.id)) for g in generations]

    def chat(
        message: str,
        target: str = "ollama",
        model: str = "",
        conversation_id: str = "",
        system: str = "",
        temperature: float | None = None,
        max_tokens: int | None = None,
        request: gr.Request = None,  # type: ignore[assignment]  (Gradio passes it)
    ) -> dict[str, Any]:
        """Send a chat message to a provider and return its whole reply. The exchange is
        saved as a conversation, like one made in the Chat tab.

        Args:
            message: what to say.
            target: "ollama", "openai", "anthropic", "gemini" or "profile:<id>" (list_chat_targets).
            model: the model name; blank for the target's default model.
            conversation_id: continue this saved conversation; blank starts a new one.
            system: a system prompt for a new conversation.
            temperature: sampling temperature; blank for the provider's default.
            max_tokens: the most tokens the reply may have.
        """
        reply = ctx.chat.chat(
            ctx.targets.resolve(target, model or None),
            message,
            conversation_id=conversation_id or None,
            options=chat_options(system or None, temperature, max_tokens),
            actor=acting(ctx.users, request),
        )
        reply.wait(timeout=None)
        if reply.error:
            raise ValidationError(reply.error)
        return {
            "reply": reply.text,
            "conversation_id": str(reply.conversation_id),
            "message_id": str(reply.message_id),
            "finish_reason": reply.finish_reason,
            "usage": jsonable(reply.usage),
        }

    def list_chat_targets() -> list[dict[str, str]]:
        """The chat targets configured here (providers and profiles), for chat's target."""
        return [{"target": value, "label": label} for label, value in ctx.targets.choices()]

    def list_models(target: str = "ollama") -> dict[str, Any]:
        """The models a chat target offers (for Ollama: the installed ones).

        Args:
            target: a chat target, as list_chat_targets gives.
        """
        return jsonable(ctx.targets.models(target))

    def comfyui_generate(
        prompt: str,
        negative_prompt: str = "",
        workflow_id: str = "",
        session_id: str = "",
        width: int = 0,
        height: int = 0,
        steps: int = 0,
        cfg: float = 0.0,
        seed: int = -1,
        checkpoint: str = "",
        batch_count: int = 1,
        wait_seconds: float = 600.0,
    ) -> list[dict[str, Any]]:
        """Generate images with a ComfyUI workflow and wait for them. Returns each
        generation with its status, concrete seed and outputs (URLs to fetch). 0 or blank
        keeps the workflow's own value.

        Args:
            prompt: the positive prompt.
            negative_prompt: what to keep out of the image.
            workflow_id: a stored workflow; blank for the default workflow.
            session_id: the session to add to; blank makes a new session named after the prompt.
            width: image width in pixels.
            height: image height in pixels.
            steps: sampling steps.
            cfg: classifier-free guidance scale.
            seed: the seed; -1 picks a random one (stored, so a re-run is exact).
            checkpoint: the checkpoint file name (see the ComfyUI options).
            batch_count: how many generations, with seeds counting up.
            wait_seconds: how long to wait for them to finish; 0 returns at once.
        """
        chosen = {"width": width, "height": height, "steps": steps, "cfg": cfg}
        parameters: dict[str, Any] = {k: v for k, v in chosen.items() if v}
        parameters |= {"prompt": prompt, "negative_prompt": negative_prompt, "seed": seed}
        if checkpoint:
            parameters["checkpoint"] = checkpoint
        made = comfyui.generator.generate(
            session_id or None,
            parameters,
            workflow_id=workflow_id or None,
            batch_count=batch_count,
            new_session=None if session_id else prompt,
        )
        return wait_for(made, wait_seconds)

    def get_generation(generation_id: str) -> dict[str, Any]:
        """One generation: status, parameters, concrete seed, outputs (URLs), timing.

        Args:
            generation_id: the generation's id.
        """
        return generation_json(comfyui.generations.get(generation_id))

    def get_generation_snapshot(generation_id: str) -> dict[str, Any]:
        """The exact ComfyUI workflow (API format) that was posted for a generation.

        Args:
            generation_id: the generation's id.
        """
        return comfyui.generations.snapshot(generation_id)

    def rerun_generation(generation_id: str, wait_seconds: float = 600.0) -> dict[str, Any]:
        """Re-run a generation exactly: the stored snapshot is posted again, byte for
        byte, as a new generation; waits for it like comfyui_generate.

        Args:
            generation_id: the generation to reproduce.
            wait_seconds: how long to wait for it to finish; 0 returns at once.
        """
        return wait_for([comfyui.generator.rerun_exact(generation_id)], wait_seconds)[0]

    def search_history(
        text: str = "",
        kind: Literal["all", "generations", "conversations"] = "all",
        limit: int = 20,
    ) -> dict[str, Any]:
        """Search what was made here: generations by prompt, conversations by title
        and message text, or both in one list, newest first.

        Args:
            text: words to look for; blank lists the newest.
            kind: "all", "generations" or "conversations".
            limit: how many to return (at most 100).
        """
        limit = max(1, min(int(limit), 100))
        if kind == "generations":
            return jsonable(ctx.history.search_generations(GenerationFilters(text), limit=limit))
        if kind == "conversations":
            return jsonable(
                ctx.history.search_conversations(ConversationFilters(text), limit=limit)
            )
        return jsonable(ctx.history.timeline(text, limit=limit))

    def create_task(
        type: str,
        prompt: str = "",
        provider: str = "",
        model: str = "",
        name: str = "",
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Queue a background task (see the task types in the Tasks tab, e.g.
        text.generate); returns it with its id, to follow with get_task.

        Args:
            type: the task type.
            prompt: the prompt of a text task.
            provider: the chat target of a text task ("ollama", "openai", "profile:<id>" …).
            model: the model of a text task.
            name: a name to find it by.
            options: further options of the task type, as a JSON object.
        """
        task = ctx.tasks.create_task(
            type,
            name=name or None,
            target=ctx.targets.resolve(provider, model or None) if provider else None,
            model=model or None,
            prompt=prompt or None,
            options=options,
        )
        return jsonable(task)

    def get_task(task_id: str) -> dict[str, Any]:
        """A task's status, progress, result or error.

        Args:
            task_id: the task's id.
        """
        return jsonable(ctx.tasks.get_task(task_id))

    tools: list[Callable[..., Any]] = [
        chat,
        list_chat_targets,
        list_models,
        comfyui_generate,
        get_generation,
        get_generation_snapshot,
        rerun_generation,
        search_history,
        create_task,
        get_task,
    ]
    for tool in tools:
        # Not queued: Gradio's MCP server then calls the tool in process with the
        # agent's own request (its credential header: see ui/common.acting) instead of
        # through a loopback gradio_client, which cannot sign in.
        tool_fn = mcp_tool()(shows_errors(answers_json(tool)))
        gr.api(tool_fn, api_name=f"mcp_{tool.__name__}", queue=False)
    return tools


def answers_json(tool: Callable[..., Any]) -> Callable[..., str]:
    """The tool answering JSON text: Gradio would hand an agent a dict's Python repr."""

    @functools.wraps(tool)
    def answer(*args: Any, **kwargs: Any) -> str:
        return json.dumps(tool(*args, **kwargs), ensure_ascii=False)

    signature = inspect.signature(tool)
    answer.__signature__ = signature.replace(return_annotation=str)  # type: ignore[attr-defined]
    answer.__annotations__ = {**tool.__annotations__, "return": str}
    return answer


def only_these_are_tools(demo: gr.Blocks) -> None:
    """Mark every event of the page that is not one of the tools as not a tool."""
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is not None and getattr(fn, "_mcp_type", None) != "tool":
            target = getattr(fn, "__func__", fn)  # a bound method: its function
            target._mcp_type = NOT_A_TOOL
