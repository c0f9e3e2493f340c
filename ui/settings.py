"""Settings tab: provider settings and profiles, with connection tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gradio as gr

from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from spoonfeeder.profiles import ConnectionCheck, KeyView, ProfileView, SettingView
from spoonfeeder.serialize import jsonable
from ui.common import Refresh, api, format_time, shows_errors, status_label
from ui.tab import Confirm, hidden_row, listen_confirm, render_confirm, shown_row

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


# ----- the tab ----------------------------------------------------------------------------


@dataclass
class SettingsView:
    # a provider's setting
    settings_table: gr.Dataframe
    provider: gr.Dropdown
    endpoint: gr.Textbox
    api_key: gr.Textbox
    default_model: gr.Textbox
    clear_key: gr.Checkbox
    save: gr.Button
    test: gr.Button
    setting_status: gr.Markdown
    # profiles
    profile_table: gr.Dataframe
    profile_pick: gr.Dropdown
    profile_id: gr.Textbox  # the id being edited ("" = new)
    p_name: gr.Textbox
    p_provider: gr.Dropdown
    p_url: gr.Textbox
    p_key: gr.Textbox
    p_clear: gr.Checkbox
    p_options: gr.Code
    p_save: gr.Button
    p_test: gr.Button
    p_delete: gr.Button
    confirm: Confirm
    profile_status: gr.Markdown

    def setting_form(self) -> list[Any]:
        """What loading a setting fills in."""
        return [
            self.api_key,
            self.endpoint,
            self.default_model,
            self.clear_key,
            self.setting_status,
        ]

    def profile_list(self) -> list[Any]:
        """What a change to the saved profiles fills in."""
        return [self.profile_id, self.profile_table, self.profile_pick]

    def profile_form(self) -> list[Any]:
        """What loading a profile fills in."""
        return [
            self.p_name,
            self.p_provider,
            self.p_url,
            self.p_key,
            self.p_clear,
            self.p_options,
            self.profile_status,
        ]


def build(ctx: AppContext) -> Refresh:
    view = render(ctx)
    return listen(ctx, view)


def render(ctx: AppContext) -> SettingsView:
    gr.Markdown(
        "API keys are encrypted (AES-256-GCM) before they are stored and are only shown masked."
    )
    return SettingsView(**_render_settings(ctx), **_render_profiles(ctx))


def _render_settings(ctx: AppContext) -> dict[str, Any]:
    profiles = ctx.profiles
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
                profiles.kind_choices(),
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
            save = gr.Button("Save", variant="primary", elem_id="setting-save")
            test = gr.Button("Test connection", elem_id="setting-test")
        setting_status = gr.Markdown(
            _status_line(first.status, first.status_message, first.last_tested),
            elem_id="setting-status",
        )
    return {
        "settings_table": settings_table,
        "provider": provider,
        "endpoint": endpoint,
        "api_key": api_key,
        "default_model": default_model,
        "clear_key": clear_key,
        "save": save,
        "test": test,
        "setting_status": setting_status,
    }


def _render_profiles(ctx: AppContext) -> dict[str, Any]:
    with gr.Accordion(
        "Profiles — more endpoints (several ComfyUI servers, OpenAI-compatible hosts…)", open=True
    ):
        views = ctx.profiles.list_profiles()
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
        # A plain textbox, so API callers may pass any id.
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
        confirm = render_confirm("profile")
        profile_status = gr.Markdown(elem_id="profile-status")
    return {
        "profile_table": profile_table,
        "profile_pick": profile_pick,
        "profile_id": profile_id,
        "p_name": p_name,
        "p_provider": p_provider,
        "p_url": p_url,
        "p_key": p_key,
        "p_clear": p_clear,
        "p_options": p_options,
        "p_save": p_save,
        "p_test": p_test,
        "p_delete": p_delete,
        "confirm": confirm,
        "profile_status": profile_status,
    }


def listen(ctx: AppContext, view: SettingsView) -> Refresh:
    _listen_settings(ctx, view)
    _listen_profiles(ctx, view)
    _listen_profile_delete(ctx, view)
    _register_json_api(ctx)
    profiles = ctx.profiles

    def refresh() -> dict[Any, Any]:
        views = profiles.list_profiles()
        return {
            view.settings_table: settings_rows(profiles.list_settings()),
            view.profile_table: profile_rows(views),
            view.profile_pick: gr.Dropdown(choices=profile_choices(views)),
        }

    return refresh, [view.settings_table, view.profile_table, view.profile_pick]


# ----- provider settings -------------------------------------------------------------------


def _setting_form(view: SettingsView, setting: SettingView) -> dict[Any, Any]:
    return {
        view.api_key: gr.Textbox(value="", placeholder=_key_placeholder(setting.key)),
        view.endpoint: gr.Textbox(value=setting.stored_url or "", placeholder=setting.endpoint_url),
        view.default_model: setting.default_model or "",
        view.clear_key: False,
        view.setting_status: _status_line(
            setting.status, setting.status_message, setting.last_tested
        ),
    }


def _listen_settings(ctx: AppContext, view: SettingsView) -> None:
    profiles = ctx.profiles

    @shows_errors
    def load_setting(name: str):
        return _setting_form(view, profiles.get_setting(name))

    @shows_errors
    def save_setting(name: str, key: str, url: str, model: str, clear: bool):
        saved = profiles.save_setting(
            name, api_key=key, endpoint_url=url, default_model=model, clear_key=clear
        )
        gr.Info(f"Saved the {saved.label} setting")
        if saved.key_removed:
            gr.Warning(KEY_REMOVED, duration=None)
        return {
            view.settings_table: settings_rows(profiles.list_settings()),
            **_setting_form(view, profiles.get_setting(name)),
        }

    @shows_errors
    def test_setting_form(name: str, url: str, key: str):
        """Test connection: what the form holds, saved or not."""
        check = profiles.check_setting_values(name, endpoint_url=url, api_key=key)
        return {
            view.settings_table: settings_rows(profiles.list_settings()),
            view.setting_status: _check_line(check),
        }

    view.provider.change(
        load_setting,
        view.provider,
        view.setting_form(),
        api_name="load_provider_setting",
        show_progress="hidden",
    )
    view.save.click(
        save_setting,
        [view.provider, view.api_key, view.endpoint, view.default_model, view.clear_key],
        [view.settings_table, *view.setting_form()],
        api_name="save_provider_setting",
        show_progress="hidden",
    )
    view.test.click(
        test_setting_form,
        [view.provider, view.endpoint, view.api_key],
        [view.settings_table, view.setting_status],
        api_name="test_provider_form",
        show_progress_on=view.setting_status,
    )


# ----- profiles ----------------------------------------------------------------------------


def _profile_form(view: SettingsView, profile: ProfileView | None) -> dict[Any, Any]:
    """The form filled with `profile`, or emptied for a new one."""
    if profile is None:
        return {
            view.p_name: "",
            view.p_provider: "openai",
            view.p_url: "",
            view.p_key: gr.Textbox(value="", placeholder="No key stored"),
            view.p_clear: False,
            view.p_options: "{}",
            view.profile_status: "",
        }
    return {
        view.p_name: profile.name,
        view.p_provider: profile.provider,
        view.p_url: profile.stored_url or "",
        view.p_key: gr.Textbox(value="", placeholder=_key_placeholder(profile.key)),
        view.p_clear: False,
        view.p_options: json.dumps(profile.options, indent=2),
        view.profile_status: _status_line(
            profile.status, profile.status_message, profile.last_tested
        ),
    }


def _profile_list(ctx: AppContext, view: SettingsView, selected: str) -> dict[Any, Any]:
    """The profiles table and picker again, `selected` the one being edited."""
    views = ctx.profiles.list_profiles()
    return {
        view.profile_id: selected,
        view.profile_table: profile_rows(views),
        view.profile_pick: gr.Dropdown(choices=profile_choices(views), value=selected),
    }


def _listen_profiles(ctx: AppContext, view: SettingsView) -> None:
    profiles = ctx.profiles

    @shows_errors
    def load_profile(profile_id: str | None):
        profile = profiles.get_profile(profile_id) if profile_id else None
        return {
            view.profile_id: profile_id,
            **_profile_form(view, profile),
            view.confirm.row: hidden_row(),
        }

    @shows_errors
    def save_profile(
        profile_id: str | None, name: str, kind: str, url: str, key: str, options: str, clear: bool
    ):
        if profile_id:
            saved = profiles.update_profile(
                profile_id, name, kind, url, key, options, clear_key=clear
            )
        else:
            saved = profiles.create_profile(name, kind, url, key, options)
        gr.Info(f"Saved profile '{saved.name}'")
        if saved.key_removed:
            gr.Warning(KEY_REMOVED, duration=None)
        return {**_profile_list(ctx, view, str(saved.id)), **_profile_form(view, saved)}

    @shows_errors
    def test_profile_form(profile_id: str | None, kind: str, url: str, key: str):
        """Test connection: what the form holds, a new profile's too."""
        check = profiles.check_profile_values(profile_id or None, kind, url, key)
        return {
            view.profile_table: profile_rows(profiles.list_profiles()),
            view.profile_status: _check_line(check),
        }

    view.profile_pick.input(
        load_profile,
        view.profile_pick,
        [view.profile_id, *view.profile_form(), view.confirm.row],
        api_name="load_profile",
        show_progress="hidden",
    )
    view.p_save.click(
        save_profile,
        [
            view.profile_id,
            view.p_name,
            view.p_provider,
            view.p_url,
            view.p_key,
            view.p_options,
            view.p_clear,
        ],
        [*view.profile_list(), *view.profile_form()],
        api_name="save_profile",
        show_progress="hidden",
    )
    view.p_test.click(
        test_profile_form,
        [view.profile_id, view.p_provider, view.p_url, view.p_key],
        [view.profile_table, view.profile_status],
        api_name="test_profile_form",
        show_progress_on=view.profile_status,
    )


def _listen_profile_delete(ctx: AppContext, view: SettingsView) -> None:
    """Delete, in two steps: the button asks, the confirm row's yes deletes."""
    profiles = ctx.profiles

    @shows_errors
    def ask_delete(profile_id: str | None):
        if not profile_id:
            raise ValidationError("Choose a saved profile to delete.")
        profile = profiles.get_profile(profile_id)
        return {
            view.confirm.row: shown_row(),
            view.confirm.question: f"Delete profile **{profile.name}**? This cannot be undone.",
        }

    @shows_errors
    def delete_profile(profile_id: str | None):
        if not profile_id:
            raise ValidationError("Choose a saved profile to delete.")
        name = profiles.delete_profile(profile_id)
        gr.Info(f"Deleted profile '{name}'")
        return {
            **_profile_list(ctx, view, NEW_PROFILE),
            **_profile_form(view, None),
            view.confirm.row: hidden_row(),
        }

    view.p_delete.click(
        ask_delete,
        view.profile_id,
        [view.confirm.row, view.confirm.question],
        api_name="confirm_delete_profile",
    )
    listen_confirm(view.confirm)
    view.confirm.yes.click(
        delete_profile,
        view.profile_id,
        [*view.profile_list(), *view.profile_form(), view.confirm.row],
        api_name="delete_profile",
        show_progress="hidden",
    )


def _register_json_api(ctx: AppContext) -> None:
    """Endpoints for scripts (gradio_client): JSON listings (keys masked), and tests."""
    profiles = ctx.profiles

    def list_provider_settings() -> list[dict]:
        return jsonable(profiles.list_settings())

    def list_profiles() -> list[dict]:
        return jsonable(profiles.list_profiles())

    def test_provider_setting(provider: str) -> dict:
        """Test the saved setting of a provider and record the result, as JSON."""
        tested = profiles.test_setting(provider)
        return {
            "status": tested.status,
            "message": tested.status_message,
            "tested": tested.last_tested,
        }

    def test_profile(profile_id: str) -> dict:
        """Test a saved profile and record the result, as JSON."""
        tested = profiles.test_profile(profile_id)
        return {
            "status": tested.status,
            "message": tested.status_message,
            "tested": tested.last_tested,
        }

    api(list_provider_settings, "list_provider_settings")
    api(list_profiles, "list_profiles")
    api(test_provider_setting, "test_provider_setting")
    api(test_profile, "test_profile")
