"""Chat tab: saved conversations with any provider, replies streamed token by token."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from spoonfeeder.access import Actor
from spoonfeeder.chat import (
    COMPLETE,
    ERROR,
    STOPPED,
    STREAMING,
    ChatService,
    ConversationView,
    MessageView,
    Reply,
    chat_options,
    describe_message,
    export_filename,
    text_of,
)
from spoonfeeder.context import AppContext
from spoonfeeder.errors import Forbidden, NotFoundError, ValidationError
from ui.common import LiveOutputs, Refresh, acting, api, format_time, shows_errors
from ui.pickers import listing_dropdown, model_dropdown
from ui.tab import (
    Confirm,
    hidden_row,
    listen_confirm,
    new_tick,
    render_confirm,
    render_tick,
    shown_row,
)

# ----- pure helpers: chatbot rendering --------------------------------


def render_message(m: MessageView, live_text: str | None = None) -> list[dict[str, Any]]:
    """A stored message as chatbot rows: text (with a footer for replies), then images."""
    if m.role == "user":
        rows: list[dict[str, Any]] = [{"role": "user", "content": m.content}] if m.content else []
        rows += [{"role": "user", "content": {"path": a["path"]}} for a in m.attachments]
        return rows
    text = m.content if live_text is None else live_text
    if m.status == STREAMING and live_text is None:
        text = text or "…"
    elif m.status in (COMPLETE, STOPPED):
        text = f"{text}\n\n*{describe_message(m)}*"
    elif m.status == ERROR:
        text = f"{text}\n\n⚠️ **{m.error}**" if text else f"⚠️ **{m.error}**"
    return [{"role": "assistant", "content": text}]


def render_conversation(conv: ConversationView) -> tuple[list[dict[str, Any]], list[str]]:
    """Chatbot rows, and the message id behind each row (for edits)."""
    rows: list[dict[str, Any]] = []
    ids: list[str] = []
    for m in conv.messages:
        rendered = render_message(m)
        rows += rendered
        ids += [str(m.id)] * len(rendered)
    return rows, ids


def setup_hint(reason: str | None) -> str:
    """What a first run shows above the chat: where to set up a provider."""
    text = (
        "👋 **No chat provider is set up yet.** In **Settings → Provider settings**, add an "
        "API key for OpenAI, Anthropic or Gemini, or the URL of your Ollama — or, under "
        "**Profiles**, any OpenAI-compatible server (vLLM, llama.cpp, LM Studio)."
    )
    return f"{text}\n\n_{reason}_" if reason else text


def conversation_choices(
    chat: ChatService, actor: Actor, search: str = ""
) -> list[tuple[str, str]]:
    return [
        (f"{c.title} · {format_time(c.updated_at)[:16]}", str(c.id))
        for c in chat.list_conversations(search, actor=actor)
    ]


def open_id(cid: str | None) -> str:
    """The id of the conversation this page has open, or a word that there is none."""
    if not cid:
        raise ValidationError("Open a conversation first")
    return cid


def _export_file(conv: ConversationView, suffix: str, content: str) -> str:
    folder = Path(tempfile.mkdtemp(prefix="spoonfeeder-export-"))
    path = folder / export_filename(conv.title, suffix)
    path.write_text(content, encoding="utf-8")
    return str(path)


# ----- the tab ----------------------------------------------------------------------------


@dataclass
class ChatView:
    # the conversations column
    new: gr.Button
    search: gr.Textbox
    picker: gr.Dropdown
    title: gr.Textbox
    rename: gr.Button
    export_md: gr.Button
    export_json: gr.Button
    export_file: gr.File
    delete: gr.Button
    confirm: Confirm
    # the chat column
    provider: gr.Dropdown
    model: gr.Dropdown
    refresh_models: gr.Button
    system: gr.Textbox
    temperature: gr.Slider
    max_tokens: gr.Number
    setup: gr.Markdown
    conv_id: gr.Textbox
    row_ids: gr.State  # the message id behind each chatbot row (for edits)
    chatbot: gr.Chatbot
    message: gr.MultimodalTextbox
    stop: gr.Button
    regenerate: gr.Button
    # set by the tab refresh (page load, tab open): fills the models, restores after a reload
    tick: gr.Textbox
    # kept in the browser: the conversation this page has open, so a reload reopens it
    remembered: gr.BrowserState

    def form(self) -> list[Any]:
        """What a reply is asked for with."""
        return [self.provider, self.model, self.system, self.temperature, self.max_tokens]

    def shown(self) -> list[Any]:
        """What a streaming reply updates."""
        return [self.conv_id, self.chatbot, self.row_ids]

    def opened(self) -> list[Any]:
        """What opening a conversation fills in."""
        return [
            *self.shown(),
            self.title,
            self.system,
            self.provider,
            self.model,
            self.confirm.row,
        ]

    def closed(self) -> list[Any]:
        """What closing one (clear, delete) empties."""
        return [*self.shown(), self.title, self.picker, self.confirm.row]


def build(ctx: AppContext, remembered: gr.BrowserState) -> Refresh:
    """The Chat tab. `remembered` (kept in the browser) holds the conversation
    this page has open, so a reload reopens it — and follows a reply still streaming."""
    view = render(ctx, remembered)
    return listen(ctx, view)


def render(ctx: AppContext, remembered: gr.BrowserState) -> ChatView:
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            conversations = _render_conversations(ctx)
        with gr.Column(scale=3):
            chatting = _render_chat(ctx)
    tick = render_tick()
    return ChatView(**conversations, **chatting, tick=tick, remembered=remembered)


def _render_conversations(ctx: AppContext) -> dict[str, Any]:
    new = gr.Button("➕ New conversation", variant="primary", elem_id="chat-new")
    search = gr.Textbox(
        label="Search conversations", placeholder="title or text…", elem_id="chat-search"
    )
    # allow_custom_value on every picker filled from the database: Gradio checks an API
    # caller's value against the choices the dropdown had when the app started, which
    # would refuse anything created since. The services check the values.
    picker = gr.Dropdown(
        [],  # filled on page load, with what the signed-in user may see
        label="Conversations",
        value=None,
        allow_custom_value=True,
        elem_id="chat-picker",
    )
    with gr.Accordion("Rename, export, delete", open=False):
        title = gr.Textbox(label="Title", elem_id="chat-title")
        rename = gr.Button("Rename", elem_id="chat-rename")
        with gr.Row():
            export_md = gr.Button("Export Markdown", elem_id="chat-export-md")
            export_json = gr.Button("Export JSON", elem_id="chat-export-json")
        export_file = gr.File(label="Export", interactive=False, elem_id="chat-export-file")
        delete = gr.Button("Delete…", variant="stop", elem_id="chat-delete")
        confirm = render_confirm("chat", question=None)
    return {
        "new": new,
        "search": search,
        "picker": picker,
        "title": title,
        "rename": rename,
        "export_md": export_md,
        "export_json": export_json,
        "export_file": export_file,
        "delete": delete,
        "confirm": confirm,
    }


def _render_chat(ctx: AppContext) -> dict[str, Any]:
    with gr.Row():
        provider = gr.Dropdown(
            ctx.targets.choices(),
            value="ollama",
            label="Provider",
            allow_custom_value=True,  # profiles made after start (see the picker)
            elem_id="chat-provider",
            scale=2,
        )
        model = gr.Dropdown(
            [], label="Model", allow_custom_value=True, elem_id="chat-model", scale=3
        )
        refresh_models = gr.Button(
            "↻ Models", elem_id="chat-refresh-models", scale=0, min_width=100
        )
    with gr.Accordion("System prompt and options", open=False):
        system = gr.Textbox(label="System prompt", lines=2, elem_id="chat-system")
        with gr.Row():
            temperature = gr.Slider(
                0, 2, value=0.7, step=0.05, label="Temperature", elem_id="chat-temperature"
            )
            max_tokens = gr.Number(
                0,
                label="Max tokens (0 = provider default)",
                precision=0,
                minimum=0,
                elem_id="chat-max-tokens",
            )
    setup = gr.Markdown(visible=False, elem_id="chat-setup")
    conv_id = gr.Textbox(label="Conversation id", visible="hidden", elem_id="chat-conv-id")
    row_ids = gr.State([])
    chatbot = gr.Chatbot(
        height=520, editable="user", elem_id="chat-bot", label="Conversation", buttons=["copy"]
    )
    message = gr.MultimodalTextbox(
        placeholder="Message… (attach images for vision models)",
        file_types=["image"],
        file_count="multiple",
        stop_btn=True,
        elem_id="chat-input",
        show_label=False,
    )
    with gr.Row():
        stop = gr.Button("⏹ Stop", elem_id="chat-stop")
        regenerate = gr.Button("↻ Regenerate", elem_id="chat-regenerate")
    return {
        "provider": provider,
        "model": model,
        "refresh_models": refresh_models,
        "system": system,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "setup": setup,
        "conv_id": conv_id,
        "row_ids": row_ids,
        "chatbot": chatbot,
        "message": message,
        "stop": stop,
        "regenerate": regenerate,
    }


def listen(ctx: AppContext, view: ChatView) -> Refresh:
    _listen_chatting(ctx, view)
    _listen_models(ctx, view)
    _listen_conversations(ctx, view)
    _listen_closing(ctx, view)
    _listen_exports(ctx, view)
    _listen_restore(ctx, view)
    _register_chat_api(ctx)

    def refresh(request: gr.Request) -> dict[Any, Any]:
        actor = acting(ctx.users, request)
        return {
            view.picker: gr.Dropdown(choices=conversation_choices(ctx.chat, actor)),
            view.provider: gr.Dropdown(choices=ctx.targets.choices()),
            view.tick: new_tick(),
        }

    return refresh, [view.picker, view.provider, view.tick]


# ----- streaming ----------------------------------------------------------------------------


def _stream(
    chat: ChatService, view: ChatView, reply: Reply, actor: Actor
) -> Iterator[dict[Any, Any]]:
    """Chatbot states while `reply` streams, then its saved form. If the page goes away
    meanwhile, the reply streams on (a reload follows it again)."""
    conv = chat.get_conversation(reply.conversation_id, actor)
    rows, ids = render_conversation(conv)
    last = conv.messages[-1]
    live = ""
    yield {view.conv_id: str(conv.id), view.chatbot: rows, view.row_ids: ids}
    for delta in reply.batched():
        live += delta
        rows[-1] = render_message(last, live_text=live)[0]
        yield {view.conv_id: str(conv.id), view.chatbot: rows, view.row_ids: ids}
    reply.wait(timeout=10)
    final_rows, final_ids = render_conversation(chat.get_conversation(conv.id, actor))
    yield {view.conv_id: str(conv.id), view.chatbot: final_rows, view.row_ids: final_ids}


def _follow(
    chat: ChatService, view: ChatView, conv: ConversationView, reply: Reply, actor: Actor
) -> Iterator[dict[Any, Any] | None]:
    """Chatbot states of a reply some other request started (this page was reloaded
    while it streamed), until it ends; None when there is no news, so the caller can
    yield and Gradio stop the generator if this page goes too."""
    rows, ids = render_conversation(conv)
    last = conv.messages[-1]
    for text in reply.follow():
        if text is None:
            yield None
            continue
        rows[-1] = render_message(last, live_text=text)[0]
        yield {view.chatbot: rows, view.row_ids: ids}
    reply.wait(timeout=10)
    final_rows, final_ids = render_conversation(chat.get_conversation(conv.id, actor))
    yield {view.chatbot: final_rows, view.row_ids: final_ids}


def _listen_chatting(ctx: AppContext, view: ChatView) -> None:
    chat = ctx.chat

    @shows_errors
    def send_message(
        cid: str | None,
        msg: dict | None,
        choice: str,
        model_name: str | None,
        sys_prompt: str | None,
        temp: float | None,
        max_tok: float | None,
        request: gr.Request,
    ):
        actor = acting(ctx.users, request)
        msg = msg or {}
        text, files = msg.get("text", "") or "", list(msg.get("files", []) or [])
        target = ctx.targets.resolve(choice, model_name)
        options = chat_options(sys_prompt, temp, max_tok)
        reply = chat.send(cid or None, text, target, options, images=files, actor=actor)
        states = _stream(chat, view, reply, actor)
        # Clear the input only once the message is safely stored.
        first = next(states)
        listed = gr.Dropdown(choices=conversation_choices(chat, actor), value=first[view.conv_id])
        yield {**first, view.message: gr.MultimodalTextbox(value=None), view.picker: listed}
        yield from states

    @shows_errors
    def regenerate(
        cid: str | None,
        choice: str,
        model_name: str | None,
        sys_prompt: str | None,
        temp: float | None,
        max_tok: float | None,
        request: gr.Request,
    ):
        actor = acting(ctx.users, request)
        reply = chat.regenerate(
            open_id(cid),
            ctx.targets.resolve(choice, model_name),
            chat_options(sys_prompt, temp, max_tok),
            actor,
        )
        yield from _stream(chat, view, reply, actor)

    @shows_errors
    def edit_message(
        cid: str | None,
        ids: list[str],
        choice: str,
        model_name: str | None,
        sys_prompt: str | None,
        temp: float | None,
        max_tok: float | None,
        edit: gr.EditData,
        request: gr.Request,
    ):
        actor = acting(ctx.users, request)
        if not cid or edit.index >= len(ids):
            raise ValidationError("That message can no longer be edited")
        reply = chat.edit_and_resend(
            cid,
            ids[edit.index],
            text_of(edit.value),
            ctx.targets.resolve(choice, model_name),
            chat_options(sys_prompt, temp, max_tok),
            actor,
        )
        yield from _stream(chat, view, reply, actor)

    @shows_errors
    def stop_reply(cid: str | None, request: gr.Request) -> None:
        if cid:
            chat.stop(cid, acting(ctx.users, request))

    _wire_chatting(view, send_message, regenerate, edit_message, stop_reply)


def _wire_chatting(
    view: ChatView,
    send: Callable[..., Any],
    regenerate: Callable[..., Any],
    edit: Callable[..., Any],
    stop: Callable[..., Any],
) -> None:
    view.message.submit(
        send,
        [view.conv_id, view.message, *view.form()],
        [*view.shown(), view.message, view.picker],
        api_name="send_message",
        show_progress="hidden",
    )
    asked = [view.conv_id, *view.form()]
    view.regenerate.click(
        regenerate, asked, view.shown(), api_name="regenerate", show_progress="hidden"
    )
    view.chatbot.retry(
        regenerate, asked, view.shown(), api_visibility="private", show_progress="hidden"
    )
    view.chatbot.edit(
        edit,
        [view.conv_id, view.row_ids, *view.form()],
        view.shown(),
        api_visibility="private",
        show_progress="hidden",
    )
    view.stop.click(stop, view.conv_id, None, api_name="stop_reply")
    view.message.stop(stop, view.conv_id, None, api_visibility="private")


# ----- models -------------------------------------------------------------------------------


def _listen_models(ctx: AppContext, view: ChatView) -> None:
    @shows_errors
    def list_models(choice: str):
        return model_dropdown(ctx, choice)

    # Clear the model at once in the browser: a message sent before the new list arrives
    # must not go to the new provider with the old provider's model.
    view.provider.input(None, None, view.model, js="() => null", api_visibility="private")
    view.provider.input(
        list_models, view.provider, view.model, api_name="list_chat_models", show_progress="hidden"
    )
    view.refresh_models.click(
        list_models, view.provider, view.model, api_visibility="private", show_progress="minimal"
    )


def _models_and_hint(
    ctx: AppContext, view: ChatView, choice: str, current: str | None
) -> dict[Any, Any]:
    """The model list, without a popup when it cannot be read; on a first run (nothing
    set up, nothing listening) a word on where to set up a provider instead."""
    listing = ctx.targets.models(choice)
    first_run = bool(listing.error) and not ctx.targets.any_configured()
    hint = gr.Markdown(setup_hint(listing.error), visible=True) if first_run else None
    return {
        view.model: listing_dropdown(listing, current, warn=False),
        view.setup: hint or gr.Markdown(visible=False),
    }


# ----- conversations ------------------------------------------------------------------------


def _opened(ctx: AppContext, view: ChatView, conv: ConversationView) -> dict[Any, Any]:
    """The page with `conv` open; its provider and model chosen if it has them."""
    rows, ids = render_conversation(conv)
    shown = {
        view.conv_id: str(conv.id),
        view.chatbot: rows,
        view.row_ids: ids,
        view.title: conv.title,
        view.system: conv.system_prompt or "",
        view.confirm.row: hidden_row(),
    }
    if choice := ctx.targets.choice_of(conv.provider, conv.profile_id):
        shown[view.provider] = gr.Dropdown(value=choice)
    if conv.model:
        shown[view.model] = gr.Dropdown(value=conv.model)
    return shown


def _closed(view: ChatView, choices: list[tuple[str, str]] | None) -> dict[Any, Any]:
    """Nothing open, so the next message starts a new conversation; `choices`, if
    given, refreshes the conversation list too."""
    listed = gr.Dropdown(value=None) if choices is None else gr.Dropdown(choices, value=None)
    return {
        view.conv_id: "",
        view.chatbot: [],
        view.row_ids: [],
        view.title: "",
        view.picker: listed,
        view.confirm.row: hidden_row(),
    }


def _listen_conversations(ctx: AppContext, view: ChatView) -> None:
    chat = ctx.chat

    @shows_errors
    def new_conversation(sys_prompt: str, request: gr.Request):
        actor = acting(ctx.users, request)
        conv = chat.create_conversation(system_prompt=sys_prompt, actor=actor)
        listed = gr.Dropdown(choices=conversation_choices(chat, actor), value=str(conv.id))
        return {**_opened(ctx, view, conv), view.picker: listed}

    @shows_errors
    def open_conversation(cid: str | None, request: gr.Request):
        if not cid:
            return {
                view.conv_id: "",
                view.chatbot: [],
                view.row_ids: [],
                view.title: "",
                view.confirm.row: hidden_row(),
            }
        return _opened(ctx, view, chat.get_conversation(cid, acting(ctx.users, request)))

    @shows_errors
    def search_conversations(term: str | None, request: gr.Request):
        actor = acting(ctx.users, request)
        return gr.Dropdown(choices=conversation_choices(chat, actor, term or ""))

    @shows_errors
    def rename_conversation(cid: str | None, new_title: str, request: gr.Request):
        actor = acting(ctx.users, request)
        conv = chat.rename(open_id(cid), new_title, actor)
        return {
            view.picker: gr.Dropdown(choices=conversation_choices(chat, actor), value=str(conv.id)),
            view.title: conv.title,
        }

    view.new.click(
        new_conversation,
        view.system,
        [*view.opened(), view.picker],
        api_name="new_conversation",
        show_progress="hidden",
    )
    view.picker.input(
        open_conversation,
        view.picker,
        view.opened(),
        api_name="open_conversation",
        show_progress="hidden",
    )
    view.search.submit(
        search_conversations,
        view.search,
        view.picker,
        api_name="search_conversations",
        show_progress="hidden",
    )
    view.search.input(
        search_conversations,
        view.search,
        view.picker,
        api_visibility="private",
        show_progress="hidden",
    )
    view.rename.click(
        rename_conversation,
        [view.conv_id, view.title],
        [view.picker, view.title],
        api_name="rename_conversation",
        show_progress="hidden",
    )


def _listen_closing(ctx: AppContext, view: ChatView) -> None:
    """Delete (in two steps: the button asks, the confirm row's yes deletes) and the
    chat box's Clear: both leave nothing open."""
    chat = ctx.chat

    @shows_errors
    def ask_delete(cid: str | None):
        open_id(cid)
        return shown_row()

    @shows_errors
    def delete_conversation(cid: str | None, request: gr.Request):
        actor = acting(ctx.users, request)
        name = chat.delete(open_id(cid), actor)
        gr.Info(f"Deleted '{name}'")
        return _closed(view, conversation_choices(chat, actor))

    @shows_errors
    def clear_conversation():
        return _closed(view, None)

    view.delete.click(
        ask_delete,
        view.conv_id,
        view.confirm.row,
        api_visibility="private",
        show_progress="hidden",
    )
    listen_confirm(view.confirm)
    view.confirm.yes.click(
        delete_conversation,
        view.conv_id,
        view.closed(),
        api_name="delete_conversation",
        show_progress="hidden",
    )
    view.chatbot.clear(
        clear_conversation, None, view.closed(), api_visibility="private", show_progress="hidden"
    )


def _listen_exports(ctx: AppContext, view: ChatView) -> None:
    chat = ctx.chat

    @shows_errors
    def export_markdown(cid: str | None, request: gr.Request) -> str:
        cid, actor = open_id(cid), acting(ctx.users, request)
        conv = chat.get_conversation(cid, actor)
        return _export_file(conv, ".md", chat.export_markdown(cid, actor))

    @shows_errors
    def export_json_file(cid: str | None, request: gr.Request) -> str:
        cid, actor = open_id(cid), acting(ctx.users, request)
        data = json.dumps(chat.export_json(cid, actor), indent=2, ensure_ascii=False)
        return _export_file(chat.get_conversation(cid, actor), ".json", data)

    view.export_md.click(
        export_markdown, view.conv_id, view.export_file, api_name="export_markdown"
    )
    view.export_json.click(export_json_file, view.conv_id, view.export_file, api_name="export_json")


# ----- page load and tab open ---------------------------------------------------------------


def _listen_restore(ctx: AppContext, view: ChatView) -> None:
    chat = ctx.chat
    restored = [*view.opened(), view.picker, view.setup]

    @shows_errors
    def restore(
        current: str | None,
        kept: str | None,
        choice: str,
        model_name: str | None,
        request: gr.Request,
    ):
        """Page load and tab open: fill the model list, quietly (no one asked yet, and the
        server may be off). After a reload (nothing open on this page, but the browser
        remembers a conversation), reopen it and follow a reply still streaming in it."""
        live = LiveOutputs(restored)
        actor = acting(ctx.users, request)
        conv = None
        if kept and not current:
            try:
                conv = chat.get_conversation(kept, actor)
            except (NotFoundError, Forbidden):  # deleted meanwhile, or another user's
                yield live.frame({view.conv_id: ""})
        if conv is None:
            yield live.frame(_models_and_hint(ctx, view, choice, model_name))
            return
        choice = ctx.targets.choice_of(conv.provider, conv.profile_id) or choice
        yield live.frame(
            {
                **_opened(ctx, view, conv),
                **_models_and_hint(ctx, view, choice, conv.model or model_name),
                view.picker: gr.Dropdown(value=str(conv.id)),
            }
        )
        reply = chat.active_reply(conv.id, actor)
        if reply is None:
            return
        for state in _follow(chat, view, conv, reply, actor):
            yield live.frame(state)  # None: no news, but hand control back now and then

    # Remember what this page has open, for a reload.
    view.conv_id.change(lambda cid: cid, view.conv_id, view.remembered, api_visibility="private")
    view.tick.change(
        restore,
        [view.conv_id, view.remembered, view.provider, view.model],
        restored,
        api_visibility="private",
        show_progress="hidden",
    )


# ----- the streaming API for scripts: deltas out --------------------------------------------


def _register_chat_api(ctx: AppContext) -> None:
    chat = ctx.chat

    @shows_errors
    def chat_api(
        provider: str,
        model: str,
        message: str | None = "",
        conversation_id: str | None = "",
        messages: list[dict] | None = None,
        system: str | None = "",
        temperature: float | None = None,
        max_tokens: int | None = None,
        request: gr.Request = None,  # type: ignore[assignment]  (Gradio passes it)
    ) -> Iterator[str]:
        """Stream a reply as text deltas.

        Continue a saved conversation (conversation_id + message), or start a new one from
        `messages` ([{"role": "user"|"assistant", "content": str}, …], the last one the
        user's) or from `message` alone. Every exchange is saved like one made in the UI.
        """
        reply = chat.chat(
            ctx.targets.resolve(provider, model),
            message,
            conversation_id=conversation_id or None,
            messages=messages,
            options=chat_options(system or None, temperature, max_tokens),
            actor=acting(ctx.users, request),
        )
        try:
            yield from reply.batched()
        finally:
            if not reply.done:  # the script cancelled or went away: nobody can follow it
                reply.stop(wait=False)
        reply.wait(timeout=10)
        if reply.status == ERROR:  # the deltas so far are saved; the caller learns why it ended
            raise ValidationError(reply.error or "The reply failed")

    api(chat_api, "chat")
