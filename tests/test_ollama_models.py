"""OllamaModelService and the Models tab, through the real ollama client and the fake server.

Tests that need stored settings or profiles use `ctx` (SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import gradio as gr
import pytest
from gradio_client import Client

from spoonfeeder.context import AppContext
from spoonfeeder.errors import (
    NotFoundError,
    ProviderRequestError,
    ProviderUnavailable,
    ValidationError,
)
from spoonfeeder.ollama_models import (
    OllamaModelService,
    PullTracker,
    format_bytes,
    validate_model_name,
)
from spoonfeeder.providers.ollama import OllamaProvider
from tests.fakes.ollama_server import DEFAULT_LAYERS, FakeOllama
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import closed_port_url, free_port, serve


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama(models=["llama3.2:latest", "qwen2.5:7b"])


@pytest.fixture
def service(ctx: AppContext, fake: FakeOllama) -> Iterator[OllamaModelService]:
    """The context's service, with the Ollama setting pointing at the fake."""
    with serve(fake.app) as url:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        yield ctx.ollama_models


# ----- pure helpers ---------------------------------------------------------------------


def test_format_bytes_reads_like_the_ollama_cli() -> None:
    assert format_bytes(2_019_393_189) == "2.0 GB"
    assert format_bytes(1_429) == "1.4 KB"
    assert format_bytes(999) == "999 B"
    assert format_bytes(4_700_000_000_000) == "4.7 TB"
    assert format_bytes(None) == "—"


def test_pull_tracker_keeps_overall_percent_monotonic_across_layers() -> None:
    tracker = PullTracker()
    steps = [
        tracker.update("pulling manifest", None, None, None),
        tracker.update("pulling a", "sha256:a", 1000, 500),
        tracker.update("pulling a", "sha256:a", 1000, 1000),
        # A second layer is announced: the raw ratio would fall from 100 % to 50 %.
        tracker.update("pulling b", "sha256:b", 1000, 0),
        tracker.update("pulling b", "sha256:b", 1000, 1000),
        tracker.update("success", None, None, None),
    ]
    assert [s.percent for s in steps] == [0.0, 50.0, 99.9, 99.9, 99.9, 100.0]
    assert steps[3].completed_bytes == 1000 and steps[3].total_bytes == 2000
    assert steps[1].layers["sha256:a"].percent == 50.0
    assert [s.done for s in steps] == [False] * 5 + [True]


# ----- reading --------------------------------------------------------------------------


def test_installed_loaded_and_show(service: OllamaModelService, fake: FakeOllama) -> None:
    installed = service.installed()
    assert [m.name for m in installed] == ["llama3.2:latest", "qwen2.5:7b"]
    first = installed[0]
    assert (first.size, first.family, first.parameter_size, first.quantization) == (
        2_019_393_189,
        "llama",
        "3.2B",
        "Q4_K_M",
    )
    assert first.modified_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert service.loaded() == []

    info = service.show("llama3.2")
    assert info.details["family"] == "llama"
    assert info.capabilities == ["completion"]
    assert info.model_info["llama.context_length"] == 131072
    assert "temperature" in (info.parameters or "")
    assert info.template


def test_show_unknown_model_is_a_clear_request_error(
    service: OllamaModelService, fake: FakeOllama
) -> None:
    with pytest.raises(ProviderRequestError, match="Model 'mistral' is not installed in Ollama"):
        service.show("mistral")


def test_unreachable_setting_is_unavailable(ctx: AppContext) -> None:
    url = closed_port_url()
    ctx.profiles.save_setting("ollama", endpoint_url=url)
    with pytest.raises(ProviderUnavailable, match=f"not reachable at {url}"):
        ctx.ollama_models.installed()


# ----- pull ---------------------------------------------------------------------------------


def test_pull_reports_progress_per_layer_and_installs_the_model(
    service: OllamaModelService, fake: FakeOllama
) -> None:
    steps = list(service.pull("phi3:mini"))

    assert fake.bodies("/api/pull") == [{"model": "phi3:mini", "stream": True, "insecure": False}]
    assert steps[0].status == "pulling manifest"
    assert [s.status for s in steps[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    percents = [s.percent for s in steps]
    assert percents == sorted(percents), "overall progress never goes back"
    assert any(0 < p < 50 for p in percents), "intermediate progress is reported"
    assert all(p < 100 for p in percents[:-1]), "100 % only once Ollama says success"
    assert steps[-1].done and steps[-1].percent == 100.0
    # Per layer: bytes and percent, ending complete.
    final_layers = steps[-1].layers
    assert {d: (x.completed, x.total) for d, x in final_layers.items()} == {
        digest: (size, size) for digest, size in DEFAULT_LAYERS
    }
    mid_layer = next(s for s in steps if s.layers and not s.done and s.completed)
    layer = mid_layer.layers[mid_layer.digest or ""]
    assert layer.completed == mid_layer.completed and layer.total == mid_layer.total
    assert steps[-1].total_bytes == sum(size for _, size in DEFAULT_LAYERS)

    assert "phi3:mini" in [m.name for m in service.installed()]


def test_closing_a_pull_stops_it(ctx: AppContext) -> None:
    fake = FakeOllama(token_delay=0.05, pull_steps=50)
    with serve(fake.app) as url:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        pull = ctx.ollama_models.pull("phi3:mini")
        next(pull), next(pull)
        pull.close()
        assert fake.stream_closed.wait(5), "the fake never saw the pull cancelled"
        assert "phi3:mini" not in [m.name for m in ctx.ollama_models.installed()]


def test_pull_of_a_name_the_registry_lacks(ctx: AppContext) -> None:
    fake = FakeOllama(pullable=["llama3.2"])
    with serve(fake.app) as url:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        with pytest.raises(ProviderRequestError, match="could not find model 'nosuchmodel'"):
            list(ctx.ollama_models.pull("nosuchmodel"))


def test_pull_cut_off_midway(service: OllamaModelService, fake: FakeOllama) -> None:
    fake.fault = "break_midway"
    with pytest.raises(ProviderUnavailable, match="dropped and the pull was cut off"):
        list(service.pull("phi3:mini"))
    fake.fault = None
    assert "phi3:mini" not in [m.name for m in service.installed()]


# ----- load / unload / delete ------------------------------------------------------------------


def test_load_and_unload_change_what_is_in_memory(
    service: OllamaModelService, fake: FakeOllama
) -> None:
    service.load("llama3.2")
    loaded = service.loaded()
    assert [m.name for m in loaded] == ["llama3.2:latest"]
    assert loaded[0].size_vram == loaded[0].size > 0
    assert loaded[0].context_length == 4096
    assert loaded[0].expires_at is not None and loaded[0].expires_at.year > 2200  # kept loaded
    assert fake.bodies("/api/generate")[0] == {
        "model": "llama3.2",
        "stream": False,
        "keep_alive": -1.0,
    }

    service.unload("llama3.2")
    assert service.loaded() == []
    assert fake.bodies("/api/generate")[1]["keep_alive"] == 0.0
    assert "llama3.2:latest" in [m.name for m in service.installed()], "unload keeps it installed"


def test_load_with_a_timed_keep_alive_expires(service: OllamaModelService) -> None:
    service.load("qwen2.5:7b", keep_alive="10m")
    (model,) = service.loaded()
    assert 500 < (model.expires_at - datetime.now(UTC)).total_seconds() <= 600  # type: ignore[operator]


def test_delete_then_gone_and_unknown_is_clear(
    service: OllamaModelService, fake: FakeOllama
) -> None:
    service.delete("qwen2.5:7b")
    assert [m.name for m in service.installed()] == ["llama3.2:latest"]
    with pytest.raises(ProviderRequestError) as caught:
        service.delete("qwen2.5:7b")
    assert "Model 'qwen2.5:7b' is not installed" in str(caught.value)
    assert "nothing to delete" in str(caught.value)


@pytest.mark.parametrize("name", ["", "   ", "llama 3", "llama3.2;rm", "bad$name", "a:", "/x"])
@pytest.mark.parametrize(
    "call",
    [
        lambda s, n: list(s.pull(n)),
        lambda s, n: s.load(n),
        lambda s, n: s.unload(n),
        lambda s, n: s.delete(n),
        lambda s, n: s.show(n),
    ],
    ids=["pull", "load", "unload", "delete", "show"],
)
def test_bad_model_names_are_refused_before_any_request(
    name: str, call: Callable[[OllamaModelService, str], object]
) -> None:
    # Refused before the endpoint is even looked up, so certainly before any request.
    service = OllamaModelService(_NeverAsked())  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as caught:
        call(service, name)
    assert caught.value.field == "model"


class _NeverAsked:
    """A ProfileService stand-in that fails the test if credentials are ever read."""

    def credentials(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a bad name must be refused before looking up the endpoint")


def test_validate_model_name_accepts_real_names() -> None:
    for name in ("llama3.2", "qwen2.5:7b", "hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M"):
        assert validate_model_name(f"  {name} ") == name
    with pytest.raises(ValidationError, match="cannot contain spaces"):
        validate_model_name("llama 3")
    with pytest.raises(ValidationError, match=r"does not allow \(\$\)"):
        validate_model_name("bad$name")


# ----- targeting an Ollama profile --------------------------------------------------------------


def test_profiles_target_their_own_server(ctx: AppContext) -> None:
    home = FakeOllama(models=["llama3.2"])
    gpu_box = FakeOllama(models=["mixtral:8x7b"], api_key="box-token")
    with serve(home.app) as home_url, serve(gpu_box.app) as box_url:
        ctx.profiles.save_setting("ollama", endpoint_url=home_url)
        box = ctx.profiles.create_profile("GPU box", "ollama", box_url, "box-token")
        ctx.profiles.create_profile("Cloud", "openai", "https://api.example.com/v1", "sk-x")
        service = ctx.ollama_models

        assert [m.name for m in service.installed()] == ["llama3.2:latest"]
        assert [m.name for m in service.installed(str(box.id))] == ["mixtral:8x7b"]
        service.load("mixtral:8x7b", profile_id=box.id)
        assert [m.name for m in service.loaded(box.id)] == ["mixtral:8x7b"]
        assert service.loaded() == []
        assert gpu_box.requests[-1].headers["authorization"] == "Bearer box-token"
        assert "authorization" not in home.requests[-1].headers

        endpoints = service.endpoints()
        assert [(e.profile_id, e.url) for e in endpoints] == [
            (None, home_url),
            (str(box.id), box_url),
        ]


def test_a_non_ollama_profile_is_refused(ctx: AppContext) -> None:
    cloud = ctx.profiles.create_profile("Cloud", "openai", "https://api.example.com/v1", "sk-x")
    with pytest.raises(ValidationError, match="'Cloud' is a openai profile, not an Ollama one"):
        ctx.ollama_models.installed(cloud.id)
    with pytest.raises(NotFoundError):
        ctx.ollama_models.installed("00000000-0000-0000-0000-000000000000")


def test_the_registry_builds_the_ollama_provider(ctx: AppContext, fake: FakeOllama) -> None:
    with serve(fake.app) as url:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        provider = ctx.providers.get("ollama")
        assert isinstance(provider, OllamaProvider)
        assert provider.check().ok


# ----- the Models tab, driven through gradio_client ---------------------------------------------


@pytest.fixture
def models_tab(ctx: AppContext) -> Iterator[Client]:
    from ui import models

    with gr.Blocks() as demo, gr.Tab("Models"):
        models.build(ctx)
    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def test_models_tab_lists_and_pulls(ctx: AppContext, models_tab: Client, fake: FakeOllama) -> None:
    from gradio_client.exceptions import AppError

    with serve(fake.app) as url:
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        listed = models_tab.predict("", api_name="/list_ollama_models")
        assert [m["name"] for m in listed] == ["llama3.2:latest", "qwen2.5:7b"]
        assert listed[0]["size"] == 2_019_393_189

        job = models_tab.submit("", "phi3:mini", api_name="/pull_model")
        updates = list(job)
        assert job.status().success
        summaries = [summary for summary, _ in updates]
        assert len(updates) >= 3, "progress is streamed, not only the final state"
        assert any("%" in s and "of" in s for s in summaries[:-1])
        final_summary, final_layers = updates[-1]
        assert final_summary.startswith("✅ Pulled **phi3:mini**")
        assert [row[-1] for row in final_layers["data"]] == ["100.0%", "100.0%"]

        names = [m["name"] for m in models_tab.predict("", api_name="/list_ollama_models")]
        assert "phi3:mini" in names

        with pytest.raises(AppError, match="cannot contain spaces"):
            models_tab.predict("", "bad name", api_name="/pull_model")
        with pytest.raises(AppError, match="Model 'ghost' is not installed"):
            models_tab.predict("", "ghost", api_name="/delete_model")

        models_tab.predict("", "llama3.2:latest", api_name="/load_model")
        loaded = models_tab.predict("", api_name="/list_loaded_models")
        assert [m["name"] for m in loaded] == ["llama3.2:latest"]
        summary, details = models_tab.predict("", "llama3.2:latest", api_name="/show_model")
        assert "**Family:** llama" in summary
        assert details["capabilities"] == ["completion"]

        # A profile created after the tab was built can be targeted too.
        other = FakeOllama(models=["gemma3:4b"])
        with serve(other.app) as other_url:
            box = ctx.profiles.create_profile("Other box", "ollama", other_url)
            listed = models_tab.predict(str(box.id), api_name="/list_ollama_models")
        assert [m["name"] for m in listed] == ["gemma3:4b"]


def test_models_tab_lists_cloud_models(ctx: AppContext, models_tab: Client) -> None:
    from gradio_client.exceptions import AppError

    key = "sk-cloud-key-12345678"
    with serve(FakeOpenAI(key=key, models=["gpt-4o-mini"]).app) as url:
        profile = ctx.profiles.create_profile("vLLM box", "openai", url + "/v1", key)
        listed = models_tab.predict(str(profile.id), api_name="/list_provider_models")
        assert [m["id"] for m in listed] == ["gpt-4o-mini"]
        table = models_tab.predict(str(profile.id), api_name="/show_provider_models")
        assert table["data"] == [["gpt-4o-mini", listed[0]["name"] or ""]]
    with pytest.raises(AppError, match="No profile with id"):
        models_tab.predict("not-a-profile", api_name="/list_provider_models")
