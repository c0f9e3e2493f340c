"""Browser smoke test: the launched app in headless Chromium, against the fake servers.

Needs Debian's chromium (`.ci/run` installs it) and the `playwright` package; it never
downloads a browser (`playwright install` is not used). Without chromium it is skipped
locally and fails under CI, like the PostgreSQL tests.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from spoonfeeder.context import AppContext
from tests.conftest import MakeApp
from tests.fakes.comfyui_server import FakeComfyUI
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.server import serve
from tests.launch import launched, sqlite_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("chromium is required under CI (apt-get install chromium)")
    pytest.skip(
        "chromium is not installed (apt-get install chromium); browser test skipped",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKENS = [f"word{i} " for i in range(40)]
CKPT = "tiny-random-sd15.safetensors"
# the app's URL, its context, its fake Ollama and fake ComfyUI
App = tuple[str, AppContext, FakeOllama, FakeComfyUI]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    # Slow enough that streaming and pull progress are visible between two polls.
    fake = FakeOllama(tokens=TOKENS, token_delay=0.03, pull_steps=25)
    comfy = FakeComfyUI(delay=0.05)  # a run takes ~1 s: each step shows long enough to see
    comfy.set_choices("CheckpointLoaderSimple", "ckpt_name", [CKPT])
    data = tmp_path_factory.mktemp("browser")
    with ExitStack() as stack:
        url = stack.enter_context(serve(fake.app))
        comfy_url = stack.enter_context(serve(comfy.app))
        ctx = stack.enter_context(sqlite_app(data, comfyui_url=comfy_url))
        ctx.profiles.save_setting("ollama", endpoint_url=url)
        ctx.start_workers(2)
        yield stack.enter_context(launched(ctx)), ctx, fake, comfy


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, app: App, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.set_default_timeout(15_000)
    page.goto(app[0])
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:  # what the page showed, for the one debugging
        shots = Path(os.environ.get("SPOONFEEDER_SCREENSHOTS", "/tmp/spoonfeeder-screenshots"))
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / f"{request.node.name}.png"), full_page=True)
    page.close()


def poll(check: Callable[[], object], timeout: float = 15) -> object:
    """The first truthy result of `check`, polled every 20 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s")


def test_chat_streams_a_reply(page: Page, app: App) -> None:
    page.get_by_role("tab", name="Chat").click()
    model = page.locator("#chat-model input")
    poll(lambda: model.input_value() == "llama3.2:latest")  # listed when the tab opens

    box = page.locator("#chat-input textarea")
    box.fill("Count for me")
    box.press("Enter")
    bot = page.locator("#chat-bot .message.bot").last

    def partial() -> str | None:
        text = bot.inner_text() if bot.count() else ""
        return text if "word2" in text and "word39" not in text else None

    seen = str(poll(partial))  # a part of the reply is shown before the rest arrives
    assert "first token" not in seen
    poll(lambda: "first token" in bot.inner_text())  # the saved reply's footer
    final = bot.inner_text()
    assert "word0 word1" in final and "word39" in final and "llama3.2:latest" in final

    ctx = app[1]
    conv = next(c for c in ctx.chat.list_conversations() if c.title == "Count for me")
    saved = ctx.chat.get_conversation(conv.id).messages[-1]
    assert (saved.status, saved.content) == ("complete", "".join(TOKENS))


def test_models_tab_pull_shows_progress(page: Page) -> None:
    page.get_by_role("tab", name="Models").click()
    installed = page.locator("#models-installed")
    poll(lambda: "llama3.2:latest" in installed.inner_text())

    page.locator("#pull-name textarea, #pull-name input").first.fill("mistral:7b")
    page.locator("#pull-start").click()
    bars = page.locator("#pull-progress progress")

    def midway() -> bool:
        values = [float(v or 0) for v in bars.evaluate_all("els => els.map(e => e.value)")]
        return bool(values) and 0 < values[0] < 100

    poll(midway)  # the overall bar moves while layers download
    status = page.locator("#pull-status")
    poll(lambda: "Pulled" in status.inner_text())
    values = bars.evaluate_all("els => els.map(e => e.value)")
    assert len(values) == 3 and all(v == 100 for v in values)  # overall, then each layer
    poll(lambda: "mistral:7b" in installed.inner_text())  # the listing is re-read


def test_comfyui_generates_with_live_progress_and_shows_the_images(page: Page, app: App) -> None:
    page.get_by_role("tab", name="ComfyUI").click()
    prompt = page.locator("#cf-prompt textarea")
    poll(lambda: prompt.input_value())  # the default workflow's values are filled in
    prompt.fill("a lighthouse at dusk")
    page.get_by_role("tab", name="Tasks").click()  # away and back: the form is kept
    page.get_by_role("tab", name="ComfyUI").click()
    page.wait_for_timeout(500)  # time for the tab's refresh to land
    assert prompt.input_value() == "a lighthouse at dusk"
    for field, value in (("width", "64"), ("height", "64"), ("steps", "3"), ("count", "2")):
        page.locator(f"#cf-{field} input").fill(value)
    checkpoint = page.locator("#cf-checkpoint input")
    checkpoint.fill(CKPT)
    checkpoint.press("Enter")
    page.locator("#cf-generate").click()

    progress = page.locator("#cf-progress")
    poll(lambda: "Step" in progress.inner_text() or "step" in progress.inner_text())
    poll(lambda: page.locator("#cf-preview img").count() > 0)  # a preview from the socket
    poll(lambda: "Done: 2 completed" in progress.inner_text())
    poll(lambda: page.locator("#cf-gallery img").count() >= 4)  # 2 runs × 2 images
    table = page.locator("#cf-generations")
    poll(lambda: table.inner_text().count("completed") == 2)
    session = app[1].comfyui.sessions.list_all()[0]
    assert (session.name, session.completed_count) == ("a lighthouse at dusk", 2)


def test_tasks_table_follows_a_task_live(page: Page, app: App) -> None:
    page.get_by_role("tab", name="Tasks").click()
    table = page.locator("#tasks-table")
    poll(lambda: "Name" in table.inner_text())  # the headers survive live updates
    ctx = app[1]
    # Created behind the page's back: only the task events can bring it to the table.
    ctx.tasks.create_task(
        "text.generate", name="Live spoon", provider="ollama", model="llama3.2", prompt="Hi"
    )
    poll(lambda: "Live spoon" in table.inner_text())

    def status() -> str:
        # The table's text is one cell per line: name, type, status, …
        lines = table.inner_text().splitlines()
        return lines[lines.index("Live spoon") + 2] if "Live spoon" in lines else ""

    poll(lambda: "completed" in status())
    table.get_by_text("Live spoon").filter(visible=True).first.click()  # not its hidden copy
    details = page.locator("#task-details")
    poll(lambda: "word0 word1" in details.inner_text())  # the result text


def test_a_reload_mid_reply_reopens_the_conversation_and_follows_it(page: Page, app: App) -> None:
    _url, ctx, fake, _comfy = app
    fake.token_delay = 0.1  # 40 tokens: 4 s, time enough to reload in the middle
    try:
        page.get_by_role("tab", name="Chat").click()
        poll(lambda: page.locator("#chat-model input").input_value() == "llama3.2:latest")
        box = page.locator("#chat-input textarea")
        box.fill("Reload while you answer")
        box.press("Enter")
        bot = page.locator("#chat-bot .message.bot").last
        poll(lambda: bot.count() and "word3" in bot.inner_text())
        page.reload()
        page.get_by_role("tab", name="Chat").click()
        bot = page.locator("#chat-bot .message.bot").last

        def growing() -> str | None:  # the reply, shown again and still arriving
            text = bot.inner_text() if bot.count() else ""
            return text if "word" in text and "word39" not in text else None

        poll(growing)
        poll(lambda: "first token" in bot.inner_text(), timeout=20)  # followed to its end
    finally:
        fake.token_delay = 0.03
    assert "word39" in bot.inner_text()
    conv = next(c for c in ctx.chat.list_conversations() if c.title == "Reload while you answer")
    saved = ctx.chat.get_conversation(conv.id).messages[-1]
    assert (saved.status, saved.content) == ("complete", "".join(TOKENS))  # never "stopped"
    # The page followed the reply without losing what it has open: the next message
    # continues the same conversation.
    box = page.locator("#chat-input textarea")
    box.fill("And one more")
    box.press("Enter")
    poll(lambda: len(ctx.chat.get_conversation(conv.id).messages) == 4)
    poll(lambda: ctx.chat.get_conversation(conv.id).messages[-1].status == "complete")


def test_clear_starts_a_new_conversation(page: Page, app: App) -> None:
    ctx = app[1]
    page.get_by_role("tab", name="Chat").click()
    poll(lambda: page.locator("#chat-model input").input_value() == "llama3.2:latest")
    box = page.locator("#chat-input textarea")
    box.fill("First topic")
    box.press("Enter")
    bot = page.locator("#chat-bot .message.bot").last
    poll(lambda: bot.count() and "first token" in bot.inner_text())
    page.locator("#chat-bot").get_by_role("button", name="Clear").click()
    poll(lambda: page.locator("#chat-bot .message").count() == 0)
    box.fill("Second topic")
    box.press("Enter")
    poll(lambda: bot.count() and "first token" in bot.inner_text())
    titles = [c.title for c in ctx.chat.list_conversations()]
    assert "First topic" in titles and "Second topic" in titles
    first = next(c for c in ctx.chat.list_conversations() if c.title == "First topic")
    assert len(ctx.chat.get_conversation(first.id).messages) == 2  # not continued


def test_the_tasks_provider_list_shows_a_profile_made_after_the_page_loaded(
    page: Page, app: App
) -> None:
    ctx = app[1]
    ctx.profiles.create_profile("Late vLLM box", "openai", "http://10.9.9.9:8000/v1")
    page.get_by_role("tab", name="Tasks").click()
    page.get_by_text("New task").click()
    page.locator("#task-provider input").click()
    options = page.get_by_role("option")
    poll(lambda: "Late vLLM box (OpenAI / compatible)" in options.all_inner_texts())


def test_a_first_run_shows_where_to_set_up_a_provider_without_popups(
    browser: Browser, make_app: MakeApp
) -> None:
    """Nothing configured and no Ollama listening: the Chat tab says where to go, once,
    in the page — not as a warning popup each time the tab opens."""
    ctx = make_app()
    try:
        with launched(ctx) as url:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            hint = page.locator("#chat-setup")
            for _ in range(2):
                page.get_by_role("tab", name="Chat").click()
                poll(lambda: hint.is_visible() and "No chat provider" in hint.inner_text())
                assert "Settings" in hint.inner_text() and "not reachable" in hint.inner_text()
                page.get_by_role("tab", name="Dashboard").click()
            page.get_by_role("tab", name="Chat").click()
            page.wait_for_timeout(1000)
            assert page.get_by_test_id("toast-text").count() == 0  # no popup at any opening
            page.close()
    finally:
        ctx.close()


# ----- ComfyUI: a reloaded page picks its runs up; results and workflows --------------------


def test_a_fresh_install_preselects_a_checkpoint_the_server_has(
    browser: Browser, app: App, make_app: MakeApp
) -> None:
    """The built-in workflow names SD 1.5's checkpoint; a server without it gets one it has."""
    comfy_url = app[1].profiles.get_setting("comfyui").endpoint_url
    fresh = make_app(comfyui_url=comfy_url)
    try:
        with launched(fresh) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url)
            page.get_by_role("tab", name="ComfyUI").click()
            notice = page.locator("#cf-notice")
            poll(lambda: "is not on this ComfyUI server" in notice.inner_text())
            assert "v1-5-pruned-emaonly.safetensors" in notice.inner_text()  # the built-in's
            assert page.locator("#cf-checkpoint input").input_value() == CKPT
            page.close()
    finally:
        fresh.close()


def test_a_reload_mid_generation_picks_up_the_run(page: Page, app: App) -> None:
    _url, ctx, _ollama, comfy = app
    comfy.hold = True  # the run pauses after its first step until released
    try:
        page.get_by_role("tab", name="ComfyUI").click()
        prompt = page.locator("#cf-prompt textarea")
        poll(lambda: prompt.input_value())
        prompt.fill("a reloaded lighthouse")
        for field, value in (("width", "64"), ("height", "64"), ("steps", "3"), ("count", "1")):
            page.locator(f"#cf-{field} input").fill(value)
        page.locator("#cf-generate").click()
        progress = page.locator("#cf-progress")
        poll(lambda: "Step" in progress.inner_text())
        page.reload()
        page.get_by_role("tab", name="ComfyUI").click()
        poll(lambda: "Step" in progress.inner_text() or "Following" in progress.inner_text())
    finally:
        comfy.hold = False
        comfy.release()
    poll(lambda: "Done: 1 completed" in progress.inner_text(), timeout=30)
    poll(lambda: page.locator("#cf-gallery img").count() >= 2)  # the run's two images
    table = page.locator("#cf-generations")
    poll(lambda: "completed" in table.inner_text() and "running" not in table.inner_text())
    run = next(g for g in ctx.comfyui.generations.list_all() if g.prompt == "a reloaded lighthouse")
    assert run.status == "completed"


def test_a_gallery_image_selects_its_generation_and_new_session_clears(
    page: Page, app: App
) -> None:
    ctx = app[1]
    session = ctx.comfyui.sessions.create("Gallery clicks")
    base = {"checkpoint": CKPT, "width": 64, "height": 64, "steps": 3}
    made = ctx.comfyui.generator.generate(session.id, {**base, "prompt": "a clicked lighthouse"})[0]
    poll(lambda: ctx.comfyui.generations.get(made.id).done, timeout=30)  # a worker ran it
    page.get_by_role("tab", name="ComfyUI").click()  # opens the newest session: this one
    gallery = page.locator("#cf-gallery")
    poll(lambda: gallery.locator("img").count() >= 2)
    gallery.locator("img").first.click()
    selected = page.locator("#cf-selected textarea, #cf-selected input").first
    poll(lambda: selected.input_value())
    assert selected.input_value() == str(made.id)
    poll(lambda: "a clicked lighthouse" in page.locator("#cf-details").inner_text())

    page.locator("#cf-name input, #cf-name textarea").first.fill("A clean slate")
    page.locator("#cf-new").click()
    poll(lambda: gallery.locator("img").count() == 0)
    poll(lambda: "completed" not in page.locator("#cf-generations").inner_text())
    # Gradio shows "processing | 0.1s" over the details while the event runs
    poll(lambda: page.locator("#cf-details").inner_text().strip() == "")


def test_deleting_a_workflow_asks_first(page: Page, app: App) -> None:
    ctx = app[1]
    before = {w.name for w in ctx.comfyui.workflows.list_all()}
    page.get_by_role("tab", name="ComfyUI").click()
    page.get_by_text("Workflows", exact=True).click()
    page.locator("#cf-wf-delete").click()
    poll(lambda: page.locator("#cf-wf-confirm").is_visible())
    assert {w.name for w in ctx.comfyui.workflows.list_all()} == before  # nothing deleted yet
    page.get_by_role("button", name="Keep it").last.click()
    poll(lambda: not page.locator("#cf-wf-confirm").is_visible())
    assert {w.name for w in ctx.comfyui.workflows.list_all()} == before
