"""Settings tab: provider settings and profiles, with connection tests."""

from __future__ import annotations

import json

import gradio as gr

from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from spoonfeeder.profiles import ConnectionCheck, KeyView, ProfileView, SettingView
from spoonfeeder.serialize import jsonable
from ui.common import Refresh, api, format_time, shows_errors, status_label

SETTING_COLUMNS = ["Provider", "Endpoint", "API key", "Default model", "Status", "Last tested"]
PROFILE_COLUMNS = ["Name", "Provider", "Endpoint", "API key", "Status", "Last tested"]
NEW_PROFILE = ""
KEY_INFO = "Only ever sent to this URL: a new URL needs the key entered again, in the same save."
KEY_REMOVED = (
    "The URL changed, so the stored API key was removed: a key is only ever sent to the "
    "URL it was saved with. Enter it again if this endpoint needs one."
)


def _key_cell(key: KeyView) -> str:
    return f"⚠️ {key.error}" if key.error else (key.masked or "—")


def _key_placeholder(key: KeyView) -> str:
    if key.error:
        return "Stored key unreadable — enter it again"
    if not key.masked:
        return "No key stored"
    return f"Stored: {key.masked} — leave blank to keep (a new URL removes it)"


def _status_line(status: str, message: str | None, tested: object) -> str:
    detail = f" — {message}" if message else ""
    return f"**{status_label(status)}**{detail}  \n_Last tested: {format_time(tested)}_"  # type: ignore[arg-type]


def _check_line(check: ConnectionCheck) -> str:
    """A Test connection of the form: recorded when it tested the saved values."""
    if check.saved:
        return _status_line(check.status, check.message, check.tested_at)
    detail = f" — {check.message}" if check.message else ""
    return (
        f"**{status_label(check.status)}**{detail}  \n"
        "_Tested the values in the form, which are not saved yet: save to keep them._"
    )


def settings_rows(views: list[SettingView]) -> list[list[str]]:
    return [
        [
            v.label,
            v.endpoint_url,
            _key_cell(v.key),
            v.default_model or "",
            status_label(v.status),
            format_time(v.last_tested),
        ]
        for v in views
    ]


def profile_rows(views: list[ProfileView]) -> list[list[str]]:
    return [
        [
            v.name,
            v.label,
            v.url,
            _key_cell(v.key),
            status_label(v.status),
            format_time(v.last_tested),
        ]
        for v in views
    ]


def profile_choices(views: list[ProfileView]) -> list[tuple[str, str]]:
    return [("➕ New profile", NEW_PROFILE)] + [(f"{v.name} ({v.label})", str(v.id)) for v in views]


def build(ctx: AppContext) -> Refresh:
    profiles = ctx.profiles

    gr.Markdown(
        "API keys are encrypted (AES-256-GCM) before they are stored and are only shown masked."
    )
    with gr.Accordion("Provider settings", open=True):
        settings_table = gr.Dataframe(
            headers=SETTING_COLUMNS,
            value=settings_rows(profiles.list_settings()),
            interactive=False,
            wrap=True,
            elem_id="settings-table",
        )
        first = profiles.get_setting("ollama")
        with gr.Row():
            provider = gr.Dropdown(
                ctx.profiles.kind_choices(),
                value="ollama",
                label="Provider",
                elem_id="setting-provider",
            )
            endpoint = gr.Textbox(
                label="Endpoint URL",
                value=first.stored_url or "",
                placeholder=first.endpoint_url,
                elem_id="setting-url",
            )
        with gr.Row():
            api_key = gr.Textbox(
                label="API key",
                info=KEY_INFO,
                type="password",
                placeholder=_key_placeholder(first.key),
                elem_id="setting-key",
            )
            default_model = gr.Textbox(
                label="Default model", value=first.default_model or "", elem_id="setting-model"
            )
        clear_key = gr.Checkbox(label="Remove the stored API key", value=False)
        with gr.Row():
            save_btn = gr.Button("Save", variant="primary", elem_id="setting-save")
            test_btn = gr.Button("Test connection", elem_id="setting-test")
        setting_status = gr.Markdown(
            _status_line(first.status, first.status_message, first.last_tested),
            elem_id="setting-status",
        )

    with gr.Accordion(
        "Profiles — more endpoints (several ComfyUI servers, OpenAI-compatible hosts…)", open=True
    ):
        views = profiles.list_profiles()
        profile_table = gr.Dataframe(
            headers=PROFILE_COLUMNS,
            value=profile_rows(views),
            interactive=False,
            wrap=True,
            elem_id="profile-table",
        )
        profile_pick = gr.Dropdown(
            profile_choices(views),
            value=NEW_PROFILE,
            label="Profile",
            allow_custom_value=True,  # a profile made after start loads too (the service checks)
            elem_id="profile-pick",
        )
        # The id being edited ("" = new): a plain textbox, so API callers may pass any id.
        profile_id = gr.Textbox(label="Profile id", visible="hidden", elem_id="profile-id")
        with gr.Row():
            p_name = gr.Textbox(label="Name", elem_id="profile-name")
            p_provider = gr.Dropdown(
                ctx.profiles.kind_choices(),
                value="openai",
                label="Provider",
                elem_id="profile-provider",
            )
            p_url = gr.Textbox(
                label="URL", placeholder="e.g. http://192.168.1.20:8000/v1", elem_id="profile-url"
            )
        with gr.Row():
            p_key = gr.Textbox(
                label="API key",
                info=KEY_INFO,
                type="password",
                placeholder="No key stored",
                elem_id="profile-key",
            )
            p_clear = gr.Checkbox(label="Remove the stored API key", value=False)
        p_options = gr.Code(
            label="Options (JSON object)", language="json", value="{}", elem_id="profile-options"
        )
        with gr.Row():
            p_save = gr.Button("Save profile", variant="primary", elem_id="profile-save")
            p_test = gr.Button("Test connection", elem_id="profile-test")
            p_delete = gr.Button("Delete…", variant="stop", elem_id="profile-delete")
        with gr.Row(visible=False) as confirm_row:
            confirm_text = gr.Markdown()
            p_confirm = gr.Button("Yes, delete", variant="stop", elem_id="profile-confirm-delete")
            p_cancel = gr.Button("Cancel", elem_id="profile-cancel-delete")
        profile_status = gr.Markdown(elem_id="profile-status")

    # ----- provider settings ---------------------------------------------------
    @shows_errors
    def load_setting(name: str):
        view = profiles.get_setting(name)
        return (
            gr.Textbox(value="", placeholder=_key_placeholder(view.key)),
            gr.Textbox(value=view.stored_url or "", placeholder=view.endpoint_url),
            view.default_model or "",
            False,
            _status_line(view.status, view.status_message, view.last_tested),
        )

    @shows_errors
    def save_setting(name: str, key: str, url: str, model: str, clear: bool):
        view = profiles.save_setting(
            name, api_key=key, endpoint_url=url, default_model=model, clear_key=clear
        )
        gr.Info(f"Saved the {view.label} setting")
        if view.key_removed:
            gr.Warning(KEY_REMOVED, duration=None)
        return (settings_rows(profiles.list_settings()), *load_setting(name))

    @shows_errors
    def test_setting_form(name: str, url: str, key: str):
        """Test connection: what the form holds, saved or not."""
        check = profiles.check_setting_values(name, endpoint_url=url, api_key=key)
        return settings_rows(profiles.list_settings()), _check_line(check)

    def test_provider_setting(provider: str) -> dict:
        """Test the saved setting of a provider and record the result, as JSON."""
        view = profiles.test_setting(provider)
        return {"status": view.status, "message": view.status_message, "tested": view.last_tested}

    setting_form = [api_key, endpoint, default_model, clear_key, setting_status]
    provider.change(
        load_setting,
        provider,
        setting_form,
        api_name="load_provider_setting",
        show_progress="hidden",
    )
    save_btn.click(
        save_setting,
        [provider, api_key, endpoint, default_model, clear_key],
        [settings_table, *setting_form],
        api_name="save_provider_setting",
        show_progress="hidden",
    )
    test_btn.click(
        test_setting_form,
        [provider, endpoint, api_key],
        [settings_table, setting_status],
        api_name="test_provider_form",
        show_progress_on=setting_status,
    )

    # ----- profiles -------------------------------------------------------------
    def _profile_form(view: ProfileView | None):
        if view is None:
            return (
                "",
                "openai",
                "",
                gr.Textbox(value="", placeholder="No key stored"),
                False,
                "{}",
                "",
            )
        return (
            view.name,
            view.provider,
            view.stored_url or "",
            gr.Textbox(value="", placeholder=_key_placeholder(view.key)),
            False,
            json.dumps(view.options, indent=2),
            _status_line(view.status, view.status_message, view.last_tested),
        )

    def _refreshed(selected: str):
        views = profiles.list_profiles()
        choices = gr.Dropdown(choices=profile_choices(views), value=selected)
        return selected, profile_rows(views), choices

    @shows_errors
    def load_profile(profile_id: str | None):
        view = profiles.get_profile(profile_id) if profile_id else None
        return (profile_id, *_profile_form(view), gr.Row(visible=False))

    @shows_errors
    def save_profile(
        profile_id: str | None, name: str, kind: str, url: str, key: str, options: str, clear: bool
    ):
        if profile_id:
            view = profiles.update_profile(
                profile_id, name, kind, url, key, options, clear_key=clear
            )
        else:
            view = profiles.create_profile(name, kind, url, key, options)
        gr.Info(f"Saved profile '{view.name}'")
        if view.key_removed:
            gr.Warning(KEY_REMOVED, duration=None)
        return (*_refreshed(str(view.id)), *_profile_form(view))

    @shows_errors
    def test_profile_form(profile_id: str | None, kind: str, url: str, key: str):
        """Test connection: what the form holds, a new profile's too."""
        check = profiles.check_profile_values(profile_id or None, kind, url, key)
        return profile_rows(profiles.list_profiles()), _check_line(check)

    def test_profile(profile_id: str) -> dict:
        """Test a saved profile and record the result, as JSON."""
        view = profiles.test_profile(profile_id)
        return {"status": view.status, "message": view.status_message, "tested": view.last_tested}

    @shows_errors
    def ask_delete(profile_id: str | None):
        if not profile_id:
            raise ValidationError("Choose a saved profile to delete.")
        view = profiles.get_profile(profile_id)
        return gr.Row(visible=True), f"Delete profile **{view.name}**? This cannot be undone."

    @shows_errors
    def delete_profile(profile_id: str | None):
        if not profile_id:
            raise ValidationError("Choose a saved profile to delete.")
        name = profiles.delete_profile(profile_id)
        gr.Info(f"Deleted profile '{name}'")
        return (*_refreshed(NEW_PROFILE), *_profile_form(None), gr.Row(visible=False))

    profile_form = [p_name, p_provider, p_url, p_key, p_clear, p_options, profile_status]
    profile_pick.input(
        load_profile,
        profile_pick,
        [profile_id, *profile_form, confirm_row],
        api_name="load_profile",
        show_progress="hidden",
    )
    p_save.click(
        save_profile,
        [profile_id, p_name, p_provider, p_url, p_key, p_options, p_clear],
        [profile_id, profile_table, profile_pick, *profile_form],
        api_name="save_profile",
        show_progress="hidden",
    )
    p_test.click(
        test_profile_form,
        [profile_id, p_provider, p_url, p_key],
        [profile_table, profile_status],
        api_name="test_profile_form",
        show_progress_on=profile_status,
    )
    p_delete.click(
        ask_delete, profile_id, [confirm_row, confirm_text], api_name="confirm_delete_profile"
    )
    p_cancel.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
    p_confirm.click(
        delete_profile,
        profile_id,
        [profile_id, profile_table, profile_pick, *profile_form, confirm_row],
        api_name="delete_profile",
        show_progress="hidden",
    )

    # Endpoints for scripts (gradio_client): JSON listings, keys masked.
    def list_provider_settings() -> list[dict]:
        return jsonable(profiles.list_settings())

    def list_profiles() -> list[dict]:
        return jsonable(profiles.list_profiles())

    api(list_provider_settings, "list_provider_settings")
    api(list_profiles, "list_profiles")
    api(test_provider_setting, "test_provider_setting")
    api(test_profile, "test_profile")

    def refresh():
        views = profiles.list_profiles()
        return (
            settings_rows(profiles.list_settings()),
            profile_rows(views),
            gr.Dropdown(choices=profile_choices(views)),
        )

    return refresh, [settings_table, profile_table, profile_pick]
