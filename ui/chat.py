"""Chat tab: saved conversations with any provider, replies streamed token by token."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

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
    text_of,
)
from spoonfeeder.context import AppContext
from spoonfeeder.errors import NotFoundError, ValidationError
from ui.common import LiveOutputs, Refresh, api, format_time, shows_errors
from ui.pickers import (
    listing_dropdown,
    model_dropdown,
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


def conversation_choices(chat: ChatService, search: str = "") -> list[tuple[str, str]]:
    return [
        (f"{c.title} · {format_time(c.updated_at)[:16]}", str(c.id))
        for c in chat.list_conversations(search)
    ]


def _export_file(conv: ConversationView, suffix: str, content: str) -> str:
    folder = Path(tempfile.mkdtemp(prefix="spoonfeeder-export-"))
    safe = "".join(c if c.isalnum() or c in "-_ " else "_" for c in conv.title)[:60].strip()
    path = folder / f"{safe or 'conversation'}{suffix}"
    path.write_text(content, encoding="utf-8")
    return str(path)


# ----- the tab ----------------------------------------------------------------------------


def build(ctx: AppContext, remembered: gr.BrowserState) -> Refresh:
    """The Chat tab. `remembered` (kept in the browser) holds the conversation
    this page has open, so a reload reopens it — and follows a reply still streaming."""
    chat = ctx.chat

    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            new_btn = gr.Button("➕ New conversation", variant="primary", elem_id="chat-new")
            search = gr.Textbox(
                label="Search conversations", placeholder="title or text…", elem_id="chat-search"
            )
            # allow_custom_value on every picker filled from the database: Gradio checks an
            # API caller's value against the choices the dropdown had when the app started,
            # which would refuse anything created since. The services check the values.
            picker = gr.Dropdown(
                conversation_choices(chat),
                label="Conversations",
                value=None,
                allow_custom_value=True,
                elem_id="chat-picker",
            )
            with gr.Accordion("Rename, export, delete", open=False):
                title = gr.Textbox(label="Title", elem_id="chat-title")
                rename_btn = gr.Button("Rename", elem_id="chat-rename")
                with gr.Row():
                    export_md = gr.Button("Export Markdown", elem_id="chat-export-md")
                    export_json = gr.Button("Export JSON", elem_id="chat-export-json")
                export_file = gr.File(label="Export", interactive=False, elem_id="chat-export-file")
                delete_btn = gr.Button("Delete…", variant="stop", elem_id="chat-delete")
                with gr.Row(visible=False) as confirm_row:
                    confirm_btn = gr.Button(
                        "Yes, delete", variant="stop", elem_id="chat-confirm-delete"
                    )
                    cancel_btn = gr.Button("Cancel", elem_id="chat-cancel-delete")
        with gr.Column(scale=3):
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
                height=520,
                editable="user",
                elem_id="chat-bot",
                label="Conversation",
                buttons=["copy"],
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
                stop_btn = gr.Button("⏹ Stop", elem_id="chat-stop")
                regen_btn = gr.Button("↻ Regenerate", elem_id="chat-regenerate")

    # ----- streaming ------------------------------------------------------------------------

    def stream(reply: Reply) -> Iterator[tuple]:
        """Yield chatbot states while `reply` streams, then its saved form. If the page
        goes away meanwhile, the reply streams on (a reload follows it again)."""
        conv = chat.get_conversation(reply.conversation_id)
        rows, ids = render_conversation(conv)
        live = ""
        last = conv.messages[-1]
        yield str(conv.id), rows, ids
        for delta in reply.batched():
            live += delta
            rows[-1] = render_message(last, live_text=live)[0]
            yield str(conv.id), rows, ids
        reply.wait(timeout=10)
        final_rows, final_ids = render_conversation(chat.get_conversation(conv.id))
        yield str(conv.id), final_rows, final_ids

    def follow(conv: ConversationView, reply: Reply) -> Iterator[tuple[list, list] | None]:
        """Chatbot states of a reply some other request started (this page was reloaded
        while it streamed), until it ends; None when there is no news, so the caller
        can yield and Gradio stop the generator if this page goes too."""
        rows, ids = render_conversation(conv)
        last = conv.messages[-1]
        for text in reply.follow():
            if text is None:
                yield None
                continue
            rows[-1] = render_message(last, live_text=text)[0]
            yield rows, ids
        reply.wait(timeout=10)
        yield render_conversation(chat.get_conversation(conv.id))

    @shows_errors
    def send_message(
        cid: str | None,
        msg: dict | None,
        choice: str,
        model_name: str | None,
        sys_prompt: str | None,
        temp: float | None,
        max_tok: float | None,
    ):
        msg = msg or {}
        text, files = msg.get("text", "") or "", list(msg.get("files", []) or [])
        target = ctx.targets.resolve(choice, model_name).validated()
        if not text.strip() and not files:
            raise ValidationError("Type a message or attach an image first")
        if not cid:
            cid = str(chat.create_conversation(system_prompt=sys_prompt).id)
        reply = chat.send(cid, text, target, chat_options(sys_prompt, temp, max_tok), images=files)
        first = True
        for conv, rows, ids in stream(reply):
            # Clear the input only once the message is safely stored.
            box = gr.MultimodalTextbox(value=None) if first else gr.skip()
            picker_update = (
                gr.Dropdown(choices=conversation_choices(chat), value=conv) if first else gr.skip()
            )
            first = False
            yield conv, rows, ids, box, picker_update

    @shows_errors
    def regenerate(
        cid: str | None,
        choice: str,
        model_name: str | None,
        sys_prompt: str | None,
        temp: float | None,
        max_tok: float | None,
    ):
        if not cid:
            raise ValidationError("Open a conversation first")
        reply = chat.regenerate(
            cid, ctx.targets.resolve(choice, model_name), chat_options(sys_prompt, temp, max_tok)
        )
        yield from stream(reply)

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
    ):
        if not cid or edit.index >= len(ids):
            raise ValidationError("That message can no longer be edited")
        reply = chat.edit_and_resend(
            cid,
            ids[edit.index],
            text_of(edit.value),
            ctx.targets.resolve(choice, model_name),
            chat_options(sys_prompt, temp, max_tok),
        )
        yield from stream(reply)

    @shows_errors
    def stop_reply(cid: str | None) -> None:
        if cid:
            chat.stop(cid)

    form = [provider, model, system, temperature, max_tokens]
    message.submit(
        send_message,
        [conv_id, message, *form],
        [conv_id, chatbot, row_ids, message, picker],
        api_name="send_message",
        show_progress="hidden",
    )
    regen_btn.click(
        regenerate,
        [conv_id, *form],
        [conv_id, chatbot, row_ids],
        api_name="regenerate",
        show_progress="hidden",
    )
    chatbot.retry(
        regenerate,
        [conv_id, *form],
        [conv_id, chatbot, row_ids],
        api_visibility="private",
        show_progress="hidden",
    )
    chatbot.edit(
        edit_message,
        [conv_id, row_ids, *form],
        [conv_id, chatbot, row_ids],
        api_visibility="private",
        show_progress="hidden",
    )
    stop_btn.click(stop_reply, conv_id, None, api_name="stop_reply")
    message.stop(stop_reply, conv_id, None, api_visibility="private")

    # ----- models ---------------------------------------------------------------------------

    @shows_errors
    def list_models(choice: str):
        return model_dropdown(ctx, choice)

    # Clear the model at once in the browser: a message sent before the new list arrives
    # must not go to the new provider with the old provider's model.
    provider.input(None, None, model, js="() => null", api_visibility="private")
    provider.input(
        list_models, provider, model, api_name="list_chat_models", show_progress="hidden"
    )
    refresh_models.click(
        list_models, provider, model, api_visibility="private", show_progress="minimal"
    )

    # ----- conversations --------------------------------------------------------------------

    def _opened(conv: ConversationView):
        rows, ids = render_conversation(conv)
        choice = ctx.targets.choice_of(conv.provider, conv.profile_id)
        return (
            str(conv.id),
            rows,
            ids,
            conv.title,
            conv.system_prompt or "",
            gr.Dropdown(value=choice) if choice else gr.skip(),
            gr.Dropdown(value=conv.model) if conv.model else gr.skip(),
            gr.Row(visible=False),
        )

    opened = [conv_id, chatbot, row_ids, title, system, provider, model, confirm_row]
    restored = [*opened, picker, setup]

    @shows_errors
    def new_conversation(sys_prompt: str):
        conv = chat.create_conversation(system_prompt=sys_prompt)
        return (*_opened(conv), gr.Dropdown(choices=conversation_choices(chat), value=str(conv.id)))

    @shows_errors
    def open_conversation(cid: str | None):
        if not cid:
            return "", [], [], "", gr.skip(), gr.skip(), gr.skip(), gr.Row(visible=False)
        return _opened(chat.get_conversation(cid))

    @shows_errors
    def restore(current: str | None, kept: str | None, choice: str, model_name: str | None):
        """Page load and tab open: fill the model list, quietly (no one asked yet, and the
        server may be off). After a reload (nothing open on this page, but the browser
        remembers a conversation), reopen it and follow a reply still streaming in it."""
        live = LiveOutputs(restored)
        conv = None
        if kept and not current:
            try:
                conv = chat.get_conversation(kept)
            except NotFoundError:  # deleted meanwhile: forget it
                yield live.frame({conv_id: ""})
        if conv is None:
            models_update, hint = models_and_hint(choice, model_name)
            yield live.frame({model: models_update, setup: hint})
            return
        shown = dict(zip(opened, _opened(conv), strict=True))
        choice = ctx.targets.choice_of(conv.provider, conv.profile_id) or choice
        shown[model], shown[setup] = models_and_hint(choice, conv.model or model_name)
        yield live.frame({**shown, picker: gr.Dropdown(value=str(conv.id))})
        reply = chat.active_reply(conv.id)
        if reply is None:
            return
        for state in follow(conv, reply):
            if state is None:
                yield live.frame()  # hand control back now and then
            else:
                yield live.frame({chatbot: state[0], row_ids: state[1]})

    def models_and_hint(choice: str, current: str | None) -> tuple[gr.Dropdown, gr.Markdown]:
        """The model list, without a popup when it cannot be read; on a first run (nothing
        set up, nothing listening) a word on where to set up a provider instead."""
        listing = ctx.targets.models(choice)
        first_run = bool(listing.error) and not ctx.targets.any_configured()
        hint = gr.Markdown(setup_hint(listing.error), visible=True) if first_run else None
        return listing_dropdown(listing, current, warn=False), hint or gr.Markdown(visible=False)

    @shows_errors
    def clear_conversation(choices: list[tuple[str, str]] | None = None):
        """The chat box's Clear (and a deletion): nothing open, so the next message starts
        a new conversation. `choices` refreshes the conversation list too."""
        listed = gr.Dropdown(value=None) if choices is None else gr.Dropdown(choices, value=None)
        return "", [], [], "", listed, gr.Row(visible=False)

    @shows_errors
    def search_conversations(term: str | None):
        return gr.Dropdown(choices=conversation_choices(chat, term or ""))

    @shows_errors
    def rename_conversation(cid: str | None, new_title: str):
        if not cid:
            raise ValidationError("Open a conversation first")
        conv = chat.rename(cid, new_title)
        return gr.Dropdown(choices=conversation_choices(chat), value=str(conv.id)), conv.title

    @shows_errors
    def ask_delete(cid: str | None):
        if not cid:
            raise ValidationError("Open a conversation first")
        return gr.Row(visible=True)

    @shows_errors
    def delete_conversation(cid: str | None):
        if not cid:
            raise ValidationError("Open a conversation first")
        name = chat.delete(cid)
        gr.Info(f"Deleted '{name}'")
        return clear_conversation(conversation_choices(chat))

    @shows_errors
    def export_markdown(cid: str | None) -> str:
        if not cid:
            raise ValidationError("Open a conversation first")
        return _export_file(chat.get_conversation(cid), ".md", chat.export_markdown(cid))

    @shows_errors
    def export_json_file(cid: str | None) -> str:
        if not cid:
            raise ValidationError("Open a conversation first")
        data = chat.export_json(cid)
        return _export_file(
            chat.get_conversation(cid), ".json", json.dumps(data, indent=2, ensure_ascii=False)
        )

    new_btn.click(
        new_conversation,
        system,
        [*opened, picker],
        api_name="new_conversation",
        show_progress="hidden",
    )
    picker.input(
        open_conversation, picker, opened, api_name="open_conversation", show_progress="hidden"
    )
    search.submit(
        search_conversations,
        search,
        picker,
        api_name="search_conversations",
        show_progress="hidden",
    )
    search.input(
        search_conversations, search, picker, api_visibility="private", show_progress="hidden"
    )
    rename_btn.click(
        rename_conversation,
        [conv_id, title],
        [picker, title],
        api_name="rename_conversation",
        show_progress="hidden",
    )
    delete_btn.click(
        ask_delete, conv_id, confirm_row, api_visibility="private", show_progress="hidden"
    )
    cancel_btn.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
    closed = [conv_id, chatbot, row_ids, title, picker, confirm_row]  # nothing open
    confirm_btn.click(
        delete_conversation,
        conv_id,
        closed,
        api_name="delete_conversation",
        show_progress="hidden",
    )
    export_md.click(export_markdown, conv_id, export_file, api_name="export_markdown")
    export_json.click(export_json_file, conv_id, export_file, api_name="export_json")
    chatbot.clear(
        clear_conversation, None, closed, api_visibility="private", show_progress="hidden"
    )
    # Remember what this page has open, for a reload.
    conv_id.change(lambda cid: cid, conv_id, remembered, api_visibility="private")
    # Set by the tab refresh (page load, tab open): fills the models, restores after a reload.
    tick = gr.Textbox(visible=False)
    tick.change(
        restore,
        [conv_id, remembered, provider, model],
        restored,
        api_visibility="private",
        show_progress="hidden",
    )

    # ----- the streaming API for scripts: deltas out ----------------------------------------

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

    def refresh():
        return (
            gr.Dropdown(choices=conversation_choices(chat)),
            gr.Dropdown(choices=ctx.targets.choices()),
            str(time.time()),
        )

    return refresh, [picker, provider, tick]
