"""Built-in text handlers: `text.generate` (one prompt) and `text.batch` (a template
over many inputs, one child task each). `install` adds them to a registry, with the
providers they ask."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import parse_id, shown
from spoonfeeder.providers.base import ChatMessage, ChatOptions, complete_reply, estimate_usage
from spoonfeeder.providers.registry import CHAT_PROVIDERS
from spoonfeeder.tasks.handlers import HandlerRegistry, TaskContext

if TYPE_CHECKING:
    from spoonfeeder.providers.registry import ProviderRegistry

MAX_BATCH_INPUTS = 1000
PLACEHOLDER = "{input}"


def _text(payload: dict[str, Any], key: str, what: str, *, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(f"{what} is required", key)
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text, not {type(value).__name__}", key)
    return value


def _target(payload: dict[str, Any]) -> dict[str, Any]:
    """provider, model, profile_id and the generation options, checked."""
    provider = _text(payload, "provider", "A provider")
    if provider not in CHAT_PROVIDERS:
        raise ValidationError(
            f"Unknown provider {shown(provider)}; choose one of: {', '.join(CHAT_PROVIDERS)}",
            "provider",
        )
    out: dict[str, Any] = {
        "provider": provider,
        "model": _text(payload, "model", "A model").strip(),  # type: ignore[union-attr]
    }
    profile_id = payload.get("profile_id")
    if profile_id:
        out["profile_id"] = str(parse_id(profile_id, "profile", ValidationError))
    system = _text(payload, "system", "The system prompt", required=False)
    if system:
        out["system"] = system
    temperature = payload.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise ValidationError("temperature must be a number between 0 and 2", "temperature")
        if not 0 <= temperature <= 2:
            raise ValidationError("temperature must be between 0 and 2", "temperature")
        out["temperature"] = float(temperature)
    max_tokens = payload.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValidationError("max_tokens must be a whole number of at least 1", "max_tokens")
        out["max_tokens"] = max_tokens
    return out


def validate_generate(payload: dict[str, Any]) -> dict[str, Any]:
    return {**_target(payload), "prompt": _text(payload, "prompt", "A prompt")}


def validate_batch(payload: dict[str, Any]) -> dict[str, Any]:
    # The UI's one prompt box fills `prompt`; the template is that prompt.
    template = payload.get("template") or payload.get("prompt")
    template = _text({"template": template}, "template", "A prompt template")
    if PLACEHOLDER not in template:  # type: ignore[operator]
        raise ValidationError(
            f"The prompt template must contain {PLACEHOLDER}, where each input goes", "template"
        )
    inputs = payload.get("inputs")
    if isinstance(inputs, str):  # one per line, as typed in a text box
        inputs = [line.strip() for line in inputs.splitlines() if line.strip()]
    if not isinstance(inputs, list) or not inputs:
        raise ValidationError("A batch needs a list of inputs (one per line)", "inputs")
    if not all(isinstance(item, str) and item.strip() for item in inputs):
        raise ValidationError("Every batch input must be non-empty text", "inputs")
    if len(inputs) > MAX_BATCH_INPUTS:
        raise ValidationError(
            f"A batch takes at most {MAX_BATCH_INPUTS} inputs; this one has {len(inputs)}",
            "inputs",
        )
    return {**_target(payload), "template": template, "inputs": inputs}


def install(registry: HandlerRegistry, providers: ProviderRegistry) -> None:
    registry.add(
        "text.generate",
        partial(generate, providers),
        validate=validate_generate,
        description="One prompt to a chat model; the result is the text and its token usage.",
    )
    registry.add(
        "text.batch",
        batch,
        validate=validate_batch,
        description="A prompt template with {input} over a list of inputs: one text.generate each.",
    )


def generate(providers: ProviderRegistry, task: TaskContext) -> dict[str, Any]:
    p = task.payload
    # No hidden SDK retries: a refused attempt goes back to the queue, which backs off.
    provider = providers.get(p["provider"], p.get("profile_id"), retries=0)
    options = ChatOptions(
        system=p.get("system"), temperature=p.get("temperature"), max_tokens=p.get("max_tokens")
    )
    limit = p.get("max_tokens")
    parts: list[str] = []
    usage: dict[str, Any] = {"tokens_in": None, "tokens_out": None}
    finish_reason = None
    task.progress(0.0, f"Asking {p['provider']} / {p['model']}", force=True)
    messages = [ChatMessage("user", p["prompt"])]
    # complete_reply: a reply with no text or no finish reason fails the attempt.
    stream = complete_reply(provider.stream_chat(p["model"], messages, options), p["provider"])
    try:
        for chunk in stream:
            task.check_cancelled()  # closing the stream (finally) closes the upstream request
            if chunk.text:
                parts.append(chunk.text)
            if chunk.usage is not None and chunk.usage.tokens_out is not None:
                usage = {"tokens_in": chunk.usage.tokens_in, "tokens_out": chunk.usage.tokens_out}
            elif chunk.finish_reason is not None and usage["tokens_out"] is None:
                guess = estimate_usage(messages, options.system, len(parts), chunk.usage)
                usage = {"tokens_in": guess.tokens_in, "tokens_out": guess.tokens_out}
                usage["estimated"] = True
            finish_reason = chunk.finish_reason or finish_reason
            chars = sum(map(len, parts))
            fraction = min(0.99, len(parts) / limit) if limit else None
            task.progress(fraction, f"Streaming: {chars} characters received")
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return {
        "text": "".join(parts),
        "usage": usage,
        "finish_reason": finish_reason,
        "provider": p["provider"],
        "model": p["model"],
    }


def batch(task: TaskContext) -> dict[str, Any]:
    p = task.payload
    # Idempotent: a rerun after a crash finds the children it already created.
    existing = task.queue.reads.children(task.id)
    if existing:
        ids = [child.id for child in existing]
    else:
        common = {k: p[k] for k in ("provider", "model", "profile_id", "system") if k in p}
        common.update({k: p[k] for k in ("temperature", "max_tokens") if k in p})
        base_name = task.task.name or "batch"
        ids = task.queue.enqueue_many(
            [
                {
                    "type": "text.generate",
                    "payload": {**common, "prompt": p["template"].replace(PLACEHOLDER, item)},
                    "name": _child_name(base_name, index, item),
                    "provider": p["provider"],
                    "model": p["model"],
                    "parent_id": task.id,
                }
                for index, item in enumerate(p["inputs"])
            ]
        )
    task.progress(1.0, f"Queued {len(ids)} text.generate tasks", force=True)
    return {"children": [str(i) for i in ids], "count": len(ids)}


def _child_name(base: str, index: int, item: str) -> str:
    """ "Summaries #2: the second input…" — which input a child task is about, at a glance."""
    first = " ".join(item.split())
    first = first if len(first) <= 40 else first[:39] + "…"
    return f"{base} #{index + 1}: {first}"[:200]
