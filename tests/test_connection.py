"""'Test connection' makes a real HTTP request and records what it found."""

from __future__ import annotations

import pytest

from spoonfeeder.chat import ChatTarget
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.comfyui_server import FakeComfyUI
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import closed_port_url, serve

GOOD_KEY = "sk-good-key-000011112222"


@pytest.mark.parametrize(
    ("provider", "app", "path"),
    [
        ("openai", FakeOpenAI(key=GOOD_KEY).app, "/v1"),
        ("anthropic", FakeAnthropic(key=GOOD_KEY).app, ""),
        ("gemini", FakeGemini(key=GOOD_KEY).app, ""),
    ],
)
def test_keyed_providers_ok_and_rejected(ctx: AppContext, provider: str, app, path: str) -> None:
    with serve(app) as url:
        ctx.profiles.save_setting(provider, api_key=GOOD_KEY, endpoint_url=url + path)
        view = ctx.profiles.test_setting(provider)
        assert view.status == "ok", view.status_message
        assert "models available" in (view.status_message or "")
        assert view.last_tested is not None

        ctx.profiles.save_setting(provider, api_key="sk-wrong-key-999999999")
        view = ctx.profiles.test_setting(provider)
        assert view.status == "auth_rejected"
        assert "rejected" in (view.status_message or "")


def test_missing_key_is_explained(ctx: AppContext) -> None:
    with serve(FakeOpenAI(key=GOOD_KEY).app) as url:
        ctx.profiles.save_setting("openai", endpoint_url=url + "/v1")
        view = ctx.profiles.test_setting("openai")
    assert view.status == "auth_rejected"
    assert "no API key is set" in (view.status_message or "")


def test_ollama_and_comfyui_report_their_versions(ctx: AppContext) -> None:
    with serve(FakeOllama().app) as ollama, serve(FakeComfyUI().app) as comfy:
        ctx.profiles.save_setting("ollama", endpoint_url=ollama)
        ctx.profiles.save_setting("comfyui", endpoint_url=comfy)
        assert "Ollama 0.12.6" in (ctx.profiles.test_setting("ollama").status_message or "")
        assert "ComfyUI 0.3.64" in (ctx.profiles.test_setting("comfyui").status_message or "")


def test_closed_port_is_unreachable(ctx: AppContext) -> None:
    url = closed_port_url()
    ctx.profiles.save_setting("ollama", endpoint_url=url)
    view = ctx.profiles.test_setting("ollama")
    assert view.status == "unreachable"
    assert url in (view.status_message or "") and "running" in (view.status_message or "")


def test_wrong_kind_of_server_is_an_error(ctx: AppContext) -> None:
    with serve(FakeOllama().app) as url:  # an Ollama where ComfyUI is expected
        ctx.profiles.save_setting("comfyui", endpoint_url=url)
        view = ctx.profiles.test_setting("comfyui")
    assert view.status == "error"
    assert "404" in (view.status_message or "")


def test_profile_connection_test_is_recorded(ctx: AppContext) -> None:
    with serve(FakeOpenAI(key=GOOD_KEY).app) as url:
        good = ctx.profiles.create_profile("vLLM", "openai", url + "/v1", GOOD_KEY)
        bad = ctx.profiles.create_profile(
            "vLLM bad key", "openai", url + "/v1", "sk-nope-123456789"
        )
        assert ctx.profiles.test_profile(good.id).status == "ok"
        assert ctx.profiles.test_profile(bad.id).status == "auth_rejected"
    down = ctx.profiles.create_profile("down", "comfyui", closed_port_url())
    tested = ctx.profiles.test_profile(down.id)
    assert tested.status == "unreachable" and tested.last_tested is not None
    statuses = {p.name: p.status for p in ctx.profiles.list_profiles()}
    assert statuses == {"vLLM": "ok", "vLLM bad key": "auth_rejected", "down": "unreachable"}


def test_changing_the_endpoint_clears_an_old_result(ctx: AppContext) -> None:
    ctx.profiles.save_setting("ollama", endpoint_url=closed_port_url())
    assert ctx.profiles.test_setting("ollama").status == "unreachable"
    view = ctx.profiles.save_setting("ollama", endpoint_url="http://other-host:11434")
    assert view.status == "untested" and view.last_tested is None


# ----- Test connection tests what the form holds --------------------------------------


def test_typed_values_are_tested_before_they_are_saved(ctx: AppContext) -> None:
    fake = FakeOpenAI(key=GOOD_KEY)
    with serve(fake.app) as url:
        check = ctx.profiles.check_setting_values(
            "openai", endpoint_url=url + "/v1", api_key=GOOD_KEY
        )
    assert (check.status, check.saved) == ("ok", False)
    assert fake.requests[-1].headers["authorization"] == f"Bearer {GOOD_KEY}"
    setting = ctx.profiles.get_setting("openai")
    assert setting.status == "untested" and not setting.key.is_set  # nothing was saved


def test_the_saved_values_are_tested_and_recorded(ctx: AppContext) -> None:
    with serve(FakeOpenAI(key=GOOD_KEY).app) as url:
        ctx.profiles.save_setting("openai", api_key=GOOD_KEY, endpoint_url=url + "/v1")
        check = ctx.profiles.check_setting_values("openai", endpoint_url=url + "/v1", api_key="")
    assert (check.status, check.saved) == ("ok", True)
    assert ctx.profiles.get_setting("openai").status == "ok"


def test_a_saved_key_is_never_sent_to_a_typed_url(ctx: AppContext) -> None:
    with serve(FakeOpenAI(key=GOOD_KEY).app) as home:
        ctx.profiles.save_setting("openai", api_key=GOOD_KEY, endpoint_url=home + "/v1")
    listener = FakeOpenAI(key=None)  # records every request
    with serve(listener.app) as elsewhere:
        check = ctx.profiles.check_setting_values(
            "openai", endpoint_url=elsewhere + "/v1", api_key=""
        )
    assert check.saved is False
    assert "the saved API key was not sent" in check.message
    sent = [r.headers.get("authorization", "") for r in listener.requests]
    assert sent and not any(GOOD_KEY in value for value in sent)


def test_a_new_profile_can_be_tested_before_it_is_saved(ctx: AppContext) -> None:
    with serve(FakeOpenAI(key=GOOD_KEY).app) as url:
        check = ctx.profiles.check_profile_values(None, "openai", url + "/v1", GOOD_KEY)
        wrong = ctx.profiles.check_profile_values(None, "openai", url + "/v1", "sk-nope-12345")
    assert (check.status, check.saved) == ("ok", False)
    assert wrong.status == "auth_rejected"
    assert ctx.profiles.list_profiles() == []


def test_a_profile_form_with_its_saved_values_records_the_result(ctx: AppContext) -> None:
    with serve(FakeOpenAI(key=GOOD_KEY).app) as url:
        profile = ctx.profiles.create_profile("vLLM", "openai", url + "/v1", GOOD_KEY)
        check = ctx.profiles.check_profile_values(profile.id, "openai", url + "/v1", "")
    assert (check.status, check.saved) == ("ok", True)
    assert ctx.profiles.get_profile(profile.id).status == "ok"


# ----- a stored key goes only to the URL it was saved with ----------------------------


@pytest.mark.parametrize(
    ("provider", "fake_class", "path"),
    [("openai", FakeOpenAI, "/v1"), ("anthropic", FakeAnthropic, ""), ("gemini", FakeGemini, "")],
)
def test_a_new_url_without_the_key_removes_the_stored_key(
    ctx: AppContext, provider: str, fake_class: type, path: str
) -> None:
    with serve(FakeOpenAI(key=GOOD_KEY).app) as home:
        ctx.profiles.save_setting(provider, api_key=GOOD_KEY, endpoint_url=home + path)
    listener = fake_class(key=None)  # records every request, accepts any key
    with serve(listener.app) as elsewhere:
        moved = ctx.profiles.save_setting(provider, endpoint_url=elsewhere + path)
        assert moved.key_removed and not moved.key.is_set
        ctx.profiles.test_setting(provider)
        ctx.providers.get(provider).list_models()  # what the Chat tab and /chat use
    sent = [str(r.headers) for r in listener.requests]
    assert sent and not any(GOOD_KEY in headers for headers in sent)


def test_a_key_entered_with_the_new_url_is_kept(ctx: AppContext) -> None:
    ctx.profiles.save_setting("openai", api_key=GOOD_KEY, endpoint_url="http://10.0.0.1:8000/v1")
    moved = ctx.profiles.save_setting(
        "openai", api_key="sk-new-key-123456789", endpoint_url="http://10.0.0.2:8000/v1"
    )
    assert not moved.key_removed and moved.key.masked == "sk-…6789"
    same = ctx.profiles.save_setting("openai", endpoint_url="http://10.0.0.2:8000/v1/")
    assert not same.key_removed and same.key.is_set  # the same URL: the key stays


def test_a_profile_moved_to_another_url_loses_its_key(ctx: AppContext) -> None:
    profile = ctx.profiles.create_profile("vLLM", "openai", "http://10.0.0.5:8000/v1", GOOD_KEY)
    listener = FakeOpenAI(key=None)
    with serve(listener.app) as elsewhere:
        moved = ctx.profiles.update_profile(profile.id, "vLLM", "openai", elsewhere + "/v1")
        assert moved.key_removed and not moved.key.is_set
        ctx.profiles.test_profile(profile.id)
        conv = ctx.chat.create_conversation()
        ctx.chat.send(conv.id, "hi", ChatTarget("openai", "gpt-4o-mini", profile.id)).wait(5)
    assert listener.requests and not any(GOOD_KEY in str(r.headers) for r in listener.requests)
    renamed = ctx.profiles.update_profile(profile.id, "vLLM 2", "openai", elsewhere + "/v1", "k")
    kept = ctx.profiles.update_profile(renamed.id, "vLLM 3", "openai", elsewhere + "/v1")
    assert not kept.key_removed and kept.key.is_set  # renaming keeps the key


# ----- Test connection is not a network probe ------------------------------------------


def _answering(status: int, body: str, headers: dict[str, str] | None = None):
    """An internal service that answers everything with `status` and a secret-bearing body."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def any_path(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse(body, status_code=status, headers=headers)

    return Starlette(routes=[Route("/{path:path}", any_path)])


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, "answered HTTP 500 (Internal Server Error)"),
        (401, "HTTP 401 (Unauthorized): the API key was rejected"),
        (418, "answered HTTP 418"),
        (302, "answered HTTP 302 (Found)"),
    ],
)
def test_an_error_body_is_never_echoed(ctx: AppContext, status: int, expected: str) -> None:
    secret = "INTERNAL-SECRET-BODY db_password=hunter2"
    app = _answering(
        status, secret, {"location": "http://10.0.0.1/admin"} if status == 302 else None
    )
    with serve(app) as url:
        check = ctx.profiles.check_setting_values("openai", endpoint_url=url, api_key="sk-x-123456")
    assert expected in check.message
    assert "SECRET" not in check.message and "hunter2" not in check.message
    assert "10.0.0.1" not in check.message  # a redirect is not followed, nor shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://intranet:8000/v1?token=abc", "query string"),
        ("http://intranet:8000/v1#frag", "query string or fragment"),
        ("http://admin:hunter2@intranet:8000/v1", "user name or password"),
        ("file:///etc/passwd", "not valid"),
        ("gopher://intranet:70/", "not valid"),
    ],
)
def test_only_plain_http_base_urls_are_accepted(ctx: AppContext, url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        ctx.profiles.save_setting("openai", endpoint_url=url)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValidationError, match=message):
        ctx.profiles.check_setting_values("openai", endpoint_url=url, api_key="")
    assert ctx.profiles.get_setting("openai").stored_url is None


@pytest.mark.parametrize("provider", ["ollama", "openai", "anthropic", "gemini", "comfyui"])
@pytest.mark.parametrize(("status", "expected"), [(302, "HTTP 302 (Found)"), (500, "HTTP 500")])
def test_every_kind_follows_no_redirect_and_echoes_no_body(
    ctx: AppContext, provider: str, status: int, expected: str
) -> None:
    """Each provider's own check (its SDK, one try): the outcome and the status only."""
    secret = "INTERNAL-SECRET-BODY db_password=hunter2"
    app = _answering(status, secret, {"location": "http://10.0.0.1/admin"})
    with serve(app) as url:
        check = ctx.profiles.check_setting_values(provider, endpoint_url=url, api_key="k-123456")
    assert check.status == "error"
    assert expected in check.message, check.message
    assert "SECRET" not in check.message and "hunter2" not in check.message
    assert "10.0.0.1" not in check.message


def test_each_kind_knows_itself() -> None:
    from spoonfeeder.providers.catalog import provider_kinds

    kinds = provider_kinds()
    assert list(kinds) == ["ollama", "openai", "anthropic", "gemini", "comfyui"]
    for name, kind in kinds.items():
        assert kind.name == name and kind.label and kind.default_url.startswith("http")
        assert kind.needs_key == (kind.key_env is not None)
        assert callable(kind.check)
    assert kinds["openai"].key_env == "OPENAI_API_KEY"
