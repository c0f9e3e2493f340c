"""A fake ComfyUI that replays the captured transcripts in tests/fixtures/comfyui/.

Use it with `tests.fakes.server.serve`::

    fake = FakeComfyUI()
    with serve(fake.app) as url:
        ...  # ComfyUIClient(url)
    fake.prompts[-1]           # the last POST /prompt body, parsed
    fake.raw_prompts[-1]       # ... and as the bytes received

What it does, as the real server (0.3.64) does in the transcripts:
- ``/ws?clientId=`` sends ``status`` with ``sid`` on connect; a client whose first message
  is ``feature_flags`` gets the server's flags back and event-4 preview frames (with
  prompt id and node), any other client gets event-1 frames.
- ``POST /prompt`` validates against ``object_info_all.json`` (unknown class, missing
  input, value not in list, below min / above max, bad number, link to a missing node,
  return type mismatch, no output node) and answers 400 ``{error, node_errors}`` as the
  real one — or 200 with ``node_errors`` when other outputs are still valid, running only
  those; a body that is not JSON gets the real HTTP 500 text. Accepted prompts run one
  at a time: the fixture message sequence of ``scenario`` is replayed to the client id
  that queued it, with this prompt's id, then ``/history/{id}`` holds the entry.
- ``/view`` serves ``files`` byte for byte; ``/queue`` (GET, POST delete), ``/interrupt``
  (optionally for one ``prompt_id``), ``/system_stats``, ``/object_info[/{class}]``,
  ``/upload/image``, ``GET /prompt``, ``/experiment/models/{folder}`` (the files of
  ``model_files``: by default what the checkpoint and LoRA combos offer, with a size and a
  modified time; a folder left out answers 404, as an older ComfyUI does; a status
  instead of the listing is answered with that status).

Knobs (plain attributes, change them between runs from the test thread):
- ``scenario``: "success" | "cached" | "execution_error" | "interrupt" for the next runs;
  ``scenarios`` (a list) overrides it for the next runs in order.
- ``outputs``: ``{node_id: {"images"|"gifs"|"video"|"audio": [{filename, subfolder,
  type}]}}`` the next successful run reports, with ``files`` holding their bytes. None
  (default) = two new PNGs per run from node 9, like SaveImage with batch_size 2.
- ``delay``: seconds between replayed frames (default 0.001).
- ``drop_socket_after``: close the client's websocket after that many frames of the next
  run; the run itself goes on and reaches ``/history`` as usual.
- ``refuse_websocket``: reject ``/ws`` handshakes (HTTP 403), as a proxy might.
- ``proxy_errors``: statuses (502, 503, 504) the next HTTP requests get instead of an
  answer, with nginx's HTML error page, as a reverse proxy answers while ComfyUI restarts;
  websocket handshakes are refused meanwhile.
- ``lose_answers``: the next N accepted ``POST /prompt`` are queued, but their answer is
  lost (a proxy's 504 after it forwarded the request).
- ``view_redirect``: ``/view`` answers 302 to that URL instead of the file (hostile).
- ``view_chunked``: ``/view`` streams files without a Content-Length.
- ``api_key``: require ``Authorization: Bearer <key>`` (HTTP 401 / handshake 403).
- ``hold``: pause every run after its first ``progress`` frame until ``release()`` (or
  an interrupt). The "interrupt" scenario always pauses there until ``/interrupt``.
- ``set_choices(class_type, input_name, values)``: what a combo accepts (checkpoints, LoRAs).

Observations: ``prompts`` / ``raw_prompts``, ``history_entries``, ``files``,
``interrupts``, ``deleted`` (queue deletes), ``uploads``, ``sockets_dropped``,
``requests`` (method, path) and ``progress_sent`` ((prompt id, step, perf_counter) just
before each ``progress`` frame, for latency benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

FIXTURES = Path(__file__).parent.parent / "fixtures" / "comfyui"
SCENARIO_FILES = {
    "success": "ws_success.jsonl",
    "cached": "ws_cached.jsonl",
    "execution_error": "ws_execution_error.jsonl",
    "interrupt": "ws_interrupted.jsonl",
}
PNG_SAMPLE = (FIXTURES / "output_sample_64x64.png").read_bytes()
FRAME_EVENT1 = (FIXTURES / "ws_preview_frame_event1.bin").read_bytes()
FRAME_EVENT4 = (FIXTURES / "ws_preview_frame_event4.bin").read_bytes()
PREVIEW_JPEG = FRAME_EVENT1[8:]
SERVER_FLAGS = json.loads((FIXTURES / "features.json").read_text())


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def png_with_text(text: str) -> bytes:
    """The sample PNG with one more tEXt chunk before IEND: a valid, distinct image."""
    payload = b"Comment\x00" + text.encode()
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF)
    return PNG_SAMPLE[:-12] + chunk + PNG_SAMPLE[-12:]


@dataclass
class Run:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    client_id: str | None
    scenario: str
    outputs_to_execute: list[str]
    interrupted: threading.Event = field(default_factory=threading.Event)


@dataclass
class Client:
    websocket: WebSocket
    preview_metadata: bool = False


class FakeComfyUI:
    def __init__(self, *, delay: float = 0.001) -> None:
        self.delay = delay
        self.scenario = "success"
        self.scenarios: list[str] = []
        self.outputs: dict[str, dict[str, list[dict[str, str]]]] | None = None
        self.files: dict[tuple[str, str, str], bytes] = {}  # (type, subfolder, filename)
        self.drop_socket_after: int | None = None
        self._hold = False
        self.refuse_websocket = False
        self.proxy_errors: list[int] = []
        self.lose_answers = 0
        self.view_redirect: str | None = None
        self.view_chunked = False
        self.api_key: str | None = None  # when set, every request needs "Bearer <key>"
        self.object_info: dict[str, Any] = load_fixture("object_info_all.json")
        # /experiment/models/{folder}: the files the combos offer, with a size and mtime
        self.model_files: dict[str, Any] = {
            "checkpoints": lambda: self._files(
                "CheckpointLoaderSimple", "ckpt_name", 2_132_625_230
            ),
            "loras": lambda: self._files("LoraLoader", "lora_name", 151_108_832),
        }
        self.system_stats_body: dict[str, Any] = load_fixture("system_stats.json")
        self.prompts: list[dict[str, Any]] = []
        self.raw_prompts: list[bytes] = []
        self.interrupts: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.uploads: list[tuple[str, bytes]] = []
        self.history_entries: dict[str, dict[str, Any]] = {}
        self.sockets_dropped = 0
        self.requests: list[tuple[str, str]] = []
        # (prompt_id, step, time.perf_counter()) just before each progress frame is sent
        self.progress_sent: list[tuple[str, int, float]] = []
        self._released = threading.Event()
        self._pending: list[Run] = []
        self._running: Run | None = None
        self._number = 0
        self._image_counter = 0
        self._last_outputs: dict[str, Any] = {}
        self._clients: dict[str, Client] = {}
        self._worker: asyncio.Task[None] | None = None
        self._sequences = {
            name: [json.loads(line) for line in (FIXTURES / file).read_text().splitlines()]
            for name, file in SCENARIO_FILES.items()
        }
        self.app = Starlette(
            routes=[
                Route("/prompt", self._post_prompt, methods=["POST"]),
                Route("/prompt", self._get_prompt, methods=["GET"]),
                Route("/history/{prompt_id}", self._history, methods=["GET"]),
                Route("/view", self._view, methods=["GET"]),
                Route("/object_info", self._object_info_all, methods=["GET"]),
                Route("/object_info/{node_class}", self._object_info_one, methods=["GET"]),
                Route("/experiment/models/{folder}", self._model_files, methods=["GET"]),
                Route("/system_stats", self._system_stats, methods=["GET"]),
                Route("/queue", self._get_queue, methods=["GET"]),
                Route("/queue", self._post_queue, methods=["POST"]),
                Route("/interrupt", self._interrupt, methods=["POST"]),
                Route("/upload/image", self._upload_image, methods=["POST"]),
                WebSocketRoute("/ws", self._websocket),
            ]
        )
        self.app = self._guarded(self.app)

    # ----- knobs -------------------------------------------------------------

    def set_choices(self, class_type: str, input_name: str, values: list[str]) -> None:
        spec = self.object_info[class_type]["input"]["required"][input_name]
        spec[0] = list(values)

    def _files(self, class_type: str, input_name: str, size: int) -> list[dict[str, Any]]:
        names = self.object_info[class_type]["input"]["required"][input_name][0]
        return [
            {
                "name": n,
                "pathIndex": 0,
                "modified": 1795480000.0 + i,
                "created": 1795480000.0,
                "size": size + i,
            }
            for i, n in enumerate(names)
        ]

    @property
    def hold(self) -> bool:
        return self._hold

    @hold.setter
    def hold(self, value: bool) -> None:
        """True: runs from now on pause after their first step, until release()."""
        self._hold = value
        if value:
            self._released.clear()

    def release(self) -> None:
        """Let held runs go on."""
        self._released.set()

    def wait_for_prompts(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.prompts) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.prompts)} prompts arrived")
            time.sleep(0.005)

    # ----- HTTP --------------------------------------------------------------

    def _authorized(self, headers: Any) -> bool:
        return self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"

    def _guarded(self, app: Any) -> Any:
        """401 for HTTP requests without the key, as an authenticating proxy answers."""

        async def guarded(scope: Any, receive: Any, send: Any) -> None:
            if self.proxy_errors and scope["type"] == "http":
                response = _proxy_error(self.proxy_errors.pop(0))
                await response(scope, receive, send)
                return
            if self.proxy_errors and scope["type"] == "websocket":
                await WebSocket(scope, receive, send).close(code=1008)
                return
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                if not self._authorized(headers):
                    response = JSONResponse({"error": "unauthorized"}, status_code=401)
                    await response(scope, receive, send)
                    return
            await app(scope, receive, send)

        return guarded

    async def _post_prompt(self, request: Request) -> Response:
        raw = await request.body()
        self.requests.append(("POST", "/prompt"))
        try:
            body = json.loads(raw)
        except ValueError:
            return PlainTextResponse(
                "500 Internal Server Error\n\nServer got itself in trouble", status_code=500
            )
        if not isinstance(body, dict) or "prompt" not in body:
            return _invalid("no_prompt", "No prompt provided", "No prompt provided")
        prompt = body["prompt"]
        checked = self._validate(prompt)
        if isinstance(checked, Response):
            return checked
        node_errors = checked  # outputs that failed; the others still run (HTTP 200)
        failed = {out for entry in node_errors.values() for out in entry["dependent_outputs"]}
        self.prompts.append(body)
        self.raw_prompts.append(raw)
        run = Run(
            self._number,
            str(body.get("prompt_id") or uuid.uuid4()),  # 0.3.64 keeps a given prompt_id
            prompt,
            {**(body.get("extra_data") or {}), "client_id": body.get("client_id")},
            body.get("client_id"),
            self.scenarios.pop(0) if self.scenarios else self.scenario,
            sorted(set(self._output_nodes(prompt)) - failed),
        )
        self._number += 1
        self._pending.append(run)
        if self._worker is None:  # one event loop thread: no race with the worker's end
            self._worker = asyncio.get_running_loop().create_task(self._execute_queue())
        if self.lose_answers:
            self.lose_answers -= 1
            return _proxy_error(504)
        return JSONResponse(
            {"prompt_id": run.prompt_id, "number": run.number, "node_errors": node_errors}
        )

    async def _get_prompt(self, _request: Request) -> Response:
        remaining = len(self._pending) + (1 if self._running else 0)
        return JSONResponse({"exec_info": {"queue_remaining": remaining}})

    async def _history(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        self.requests.append(("GET", f"/history/{prompt_id}"))
        entry = self.history_entries.get(prompt_id)
        return JSONResponse({prompt_id: entry} if entry else {})

    async def _view(self, request: Request) -> Response:
        q = request.query_params
        key = (q.get("type", "output"), q.get("subfolder", ""), q.get("filename", ""))
        self.requests.append(("GET", f"/view?{request.url.query}"))
        if self.view_redirect:  # a hostile server: "the image is over there"
            return Response(status_code=302, headers={"location": self.view_redirect})
        data = self.files.get(key)
        if data is None:
            return Response(status_code=404)
        media = "image/png" if key[2].endswith(".png") else "application/octet-stream"
        headers = {"Content-Disposition": f'filename="{key[2]}"'}
        if self.view_chunked:  # no Content-Length: the size shows only while streaming

            async def chunks() -> Any:
                for start in range(0, len(data), 65536):
                    yield data[start : start + 65536]

            return StreamingResponse(chunks(), media_type=media, headers=headers)
        return Response(data, media_type=media, headers=headers)

    async def _object_info_all(self, _request: Request) -> Response:
        return JSONResponse(self.object_info)

    async def _object_info_one(self, request: Request) -> Response:
        name = request.path_params["node_class"]
        self.requests.append(("GET", f"/object_info/{name}"))
        return JSONResponse({name: self.object_info[name]} if name in self.object_info else {})

    async def _model_files(self, request: Request) -> Response:
        folder = request.path_params["folder"]
        self.requests.append(("GET", f"/experiment/models/{folder}"))
        if folder not in self.model_files:
            return Response(status_code=404)
        files = self.model_files[folder]
        if isinstance(files, int):  # a status to fail with, as a broken server does
            return PlainTextResponse("500: Internal Server Error", status_code=files)
        return JSONResponse(files())

    async def _system_stats(self, _request: Request) -> Response:
        return JSONResponse(self.system_stats_body)

    async def _get_queue(self, _request: Request) -> Response:
        def item(run: Run) -> list[Any]:
            return [run.number, run.prompt_id, run.prompt, run.extra_data, run.outputs_to_execute]

        return JSONResponse(
            {
                "queue_running": [item(self._running)] if self._running else [],
                "queue_pending": [item(run) for run in self._pending],
            }
        )

    async def _post_queue(self, request: Request) -> Response:
        body = await request.json()
        if "delete" in body:
            ids = set(body["delete"])
            self.deleted += list(ids)
            self._pending = [run for run in self._pending if run.prompt_id not in ids]
        if body.get("clear"):
            self._pending.clear()
        return Response(status_code=200)

    async def _interrupt(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        self.interrupts.append(body)
        target = body.get("prompt_id") if isinstance(body, dict) else None
        if self._running and (not target or target == self._running.prompt_id):
            self._running.interrupted.set()
        return Response(status_code=200)

    async def _upload_image(self, request: Request) -> Response:
        """As server.py's image_upload: without overwrite, a name taken by other bytes
        becomes "name (1).png" (the same bytes keep the name); then LoadImage lists it."""
        form = await request.form()
        upload = form["image"]
        data = await upload.read()  # type: ignore[union-attr]
        name = str(upload.filename)  # type: ignore[union-attr]
        subfolder = str(form.get("subfolder") or "")
        if str(form.get("overwrite") or "") not in ("true", "1"):
            stem, dot, ext = name.rpartition(".")
            number = 1
            while self.files.get(("input", subfolder, name), data) != data:
                name = f"{stem} ({number}){dot}{ext}"
                number += 1
        self.uploads.append((name, data))
        self.files[("input", subfolder, name)] = data
        listed = self.object_info["LoadImage"]["input"]["required"]["image"][0]
        if (f"{subfolder}/{name}" if subfolder else name) not in listed:
            listed.append(f"{subfolder}/{name}" if subfolder else name)
        return JSONResponse({"name": name, "subfolder": subfolder, "type": "input"})

    # ----- websocket ---------------------------------------------------------

    async def _websocket(self, websocket: WebSocket) -> None:
        client_id = websocket.query_params.get("clientId") or uuid.uuid4().hex
        if self.refuse_websocket or not self._authorized(websocket.headers):
            await websocket.close(code=1008)  # a proxy refusing the handshake: HTTP 403
            return
        await websocket.accept()
        client = Client(websocket)
        self._clients[client_id] = client
        remaining = len(self._pending) + (1 if self._running else 0)
        await websocket.send_text(
            json.dumps(
                {
                    "type": "status",
                    "data": {
                        "status": {"exec_info": {"queue_remaining": remaining}},
                        "sid": client_id,
                    },
                }
            )
        )
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    message = json.loads(text)
                except ValueError:
                    continue
                if message.get("type") == "feature_flags":
                    client.preview_metadata = bool(
                        (message.get("data") or {}).get("supports_preview_metadata")
                    )
                    await websocket.send_text(
                        json.dumps({"type": "feature_flags", "data": SERVER_FLAGS})
                    )
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if self._clients.get(client_id) is client:
                del self._clients[client_id]

    async def _send(self, run: Run, frame: str | bytes) -> None:
        client = self._clients.get(run.client_id or "")
        if client is None:
            return
        try:
            if isinstance(frame, bytes):
                await client.websocket.send_bytes(frame)
            else:
                await client.websocket.send_text(frame)
        except Exception:  # the client went away: the run goes on, as on the real server
            self._clients.pop(run.client_id or "", None)

    async def _drop(self, run: Run) -> None:
        client = self._clients.pop(run.client_id or "", None)
        if client is not None:
            self.sockets_dropped += 1
            with contextlib.suppress(Exception):
                await client.websocket.close(code=1011)

    # ----- execution ---------------------------------------------------------

    async def _execute_queue(self) -> None:
        """Run queued prompts one at a time, like ComfyUI's prompt worker; end when idle."""
        try:
            while self._pending:
                run = self._pending.pop(0)
                self._running = run
                try:
                    await self._execute(run)
                finally:
                    self._running = None
        finally:
            self._worker = None

    async def _execute(self, run: Run) -> None:
        sequence = self._sequences[run.scenario]
        client = self._clients.get(run.client_id or "")
        if client is not None and client.preview_metadata:
            sequence = _previews_first(sequence)
        fixture_id = next(
            m["data"]["prompt_id"] for m in sequence if m.get("type") == "execution_start"
        )
        outputs = self._outputs_for(run)
        drop_after, self.drop_socket_after = self.drop_socket_after, None
        messages: list[list[Any]] = []
        sent = 0
        held = False
        index = 1  # frame 0 is the connect-time status
        while index < len(sequence):
            frame = sequence[index]
            index += 1
            if frame.get("type") == "feature_flags":
                continue
            if frame.get("binary"):
                payload: str | bytes = self._preview_frame(run)
            else:
                frame = json.loads(json.dumps(frame).replace(fixture_id, run.prompt_id))
                kind, data = frame["type"], frame["data"]
                if kind == "executed" and outputs.get(str(data.get("node"))):
                    data["output"] = outputs[str(data["node"])]
                if "timestamp" in data:
                    data["timestamp"] = int(time.time() * 1000)
                if kind.startswith("execution_"):
                    messages.append([kind, data])
                payload = json.dumps(frame)
            if frame.get("type") == "executing" and frame["data"].get("node") is None:
                # the real server writes history before this last message (main.py)
                self._record_history(run, messages, outputs)
            if drop_after is not None and sent == drop_after:
                await self._drop(run)
            if frame.get("type") == "progress":
                self.progress_sent.append(
                    (run.prompt_id, frame["data"]["value"], time.perf_counter())
                )
            await self._send(run, payload)
            sent += 1
            await asyncio.sleep(self.delay)
            if not held and frame.get("type") == "progress":
                pause = run.scenario == "interrupt" or self.hold
                if pause:
                    held = True
                    await self._wait_for(run)
                    # the interrupt transcript itself goes on to execution_interrupted
                    if run.interrupted.is_set() and run.scenario != "interrupt":
                        messages.append(
                            ["execution_interrupted", self._interruption(run, "3", "KSampler")]
                        )
                        self._record_history(run, messages, outputs)
                        for tail in self._interruption_tail(run):
                            await self._send(run, tail)
                        break
        if run.prompt_id not in self.history_entries:
            self._record_history(run, messages, outputs)

    def _record_history(self, run: Run, messages: list[list[Any]], outputs: dict[str, Any]) -> None:
        status = self._final_status(messages)
        if status == "success":
            self._last_outputs = outputs
        done = outputs if status == "success" else {}
        self.history_entries[run.prompt_id] = {
            "prompt": [
                run.number,
                run.prompt_id,
                run.prompt,
                run.extra_data,
                run.outputs_to_execute,
            ],
            "outputs": done,
            "status": {
                "status_str": "success" if status == "success" else "error",
                "completed": status == "success",
                "messages": list(messages),
            },
            "meta": {
                node: {
                    "node_id": node,
                    "display_node": node,
                    "parent_node": None,
                    "real_node_id": node,
                }
                for node in done
            },
        }

    async def _wait_for(self, run: Run) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if run.interrupted.is_set() or (
                run.scenario != "interrupt" and self._released.is_set()
            ):
                return
            await asyncio.sleep(0.005)

    def _interruption(self, run: Run, node_id: str, node_type: str) -> dict[str, Any]:
        return {
            "prompt_id": run.prompt_id,
            "node_id": node_id,
            "node_type": node_type,
            "executed": [],
            "timestamp": int(time.time() * 1000),
        }

    def _interruption_tail(self, run: Run) -> list[str]:
        return [
            json.dumps(
                {"type": "execution_interrupted", "data": self._interruption(run, "3", "KSampler")}
            ),
            json.dumps(
                {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}
            ),
            json.dumps({"type": "executing", "data": {"node": None, "prompt_id": run.prompt_id}}),
        ]

    @staticmethod
    def _final_status(messages: list[list[Any]]) -> str:
        kinds = {kind for kind, _ in messages}
        if "execution_error" in kinds:
            return "error"
        if "execution_interrupted" in kinds:
            return "interrupted"
        return "success"

    def _preview_frame(self, run: Run) -> bytes:
        client = self._clients.get(run.client_id or "")
        if client is None or not client.preview_metadata:
            return FRAME_EVENT1
        meta = {
            "node_id": "3",
            "prompt_id": run.prompt_id,
            "display_node_id": "3",
            "parent_node_id": None,
            "real_node_id": "3",
            "image_type": "image/jpeg",
        }
        encoded = json.dumps(meta).encode()
        return struct.pack(">II", 4, len(encoded)) + encoded + PREVIEW_JPEG

    def _outputs_for(self, run: Run) -> dict[str, Any]:
        if run.scenario == "cached" and self._last_outputs:
            return copy.deepcopy(self._last_outputs)
        if self.outputs is not None:
            return copy.deepcopy(self.outputs)
        images = []
        for _ in range(2):
            self._image_counter += 1
            name = f"ComfyUI_{self._image_counter:05d}_.png"
            self.files[("output", "", name)] = png_with_text(f"{run.prompt_id} {name}")
            images.append({"filename": name, "subfolder": "", "type": "output"})
        return {"9": {"images": images}}

    # ----- validation, as execution.validate_prompt answers ------------------

    def _output_nodes(self, prompt: dict[str, Any]) -> list[str]:
        return [
            node_id
            for node_id, node in prompt.items()
            if self.object_info.get(node.get("class_type"), {}).get("output_node")
        ]

    def _validate(self, prompt: Any) -> Response | dict[str, Any]:
        """A 400/500 response as the real server's, or the node_errors of outputs that
        will not run while others do (the real server then answers 200)."""
        if not isinstance(prompt, dict):
            return _invalid(
                "invalid_prompt", "Cannot execute because the prompt is not an object.", ""
            )
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return _invalid(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                )
            if node["class_type"] not in self.object_info:
                return _invalid(
                    "invalid_prompt",
                    f"Cannot execute because node {node['class_type']} does not exist.",
                    f"Node ID '#{node_id}'",
                )
        outputs = self._output_nodes(prompt)
        if not outputs:
            return _invalid("prompt_no_outputs", "Prompt has no outputs", "")
        node_errors: dict[str, Any] = {}
        for output in outputs:
            for node_id in self._reachable(prompt, output):
                errors = self._validate_node(prompt, node_id)
                if errors:
                    entry = node_errors.setdefault(
                        node_id,
                        {
                            "errors": errors,
                            "dependent_outputs": [],
                            "class_type": prompt[node_id]["class_type"],
                        },
                    )
                    if output not in entry["dependent_outputs"]:
                        entry["dependent_outputs"].append(output)
        failed = {out for entry in node_errors.values() for out in entry["dependent_outputs"]}
        if failed and failed >= set(outputs):  # nothing valid left to run
            return JSONResponse(
                {
                    "error": {
                        "type": "prompt_outputs_failed_validation",
                        "message": "Prompt outputs failed validation",
                        "details": "",
                        "extra_info": {},
                    },
                    "node_errors": node_errors,
                },
                status_code=400,
            )
        return node_errors

    @staticmethod
    def _reachable(prompt: dict[str, Any], start: str) -> list[str]:
        seen: list[str] = []
        stack = [start]
        while stack:
            node_id = stack.pop()
            if node_id in seen or node_id not in prompt:
                continue
            seen.append(node_id)
            for value in (prompt[node_id].get("inputs") or {}).values():
                if _is_link(value):
                    stack.append(value[0])
        return seen

    def _validate_node(self, prompt: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
        node = prompt[node_id]
        info = self.object_info[node["class_type"]]
        inputs = node.get("inputs") or {}
        errors: list[dict[str, Any]] = []
        for name, spec in (info.get("input", {}).get("required") or {}).items():
            if name not in inputs:
                errors.append(
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": name,
                        "extra_info": {"input_name": name},
                    }
                )
                continue
            error = self._validate_value(prompt, name, spec, inputs[name])
            if error:
                errors.append(error)
        return errors

    def _validate_value(
        self, prompt: dict[str, Any], name: str, spec: list[Any], value: Any
    ) -> dict[str, Any] | None:
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
        if _is_link(value):
            source = prompt.get(value[0])
            if source is None:
                return {
                    "type": "exception_during_inner_validation",
                    "message": "Exception when validating inner node",
                    "details": f"'{value[0]}'",
                    "extra_info": {
                        "input_name": name,
                        "exception_type": "KeyError",
                        "linked_node": value,
                    },
                }
            produced = self.object_info[source["class_type"]].get("output") or []
            received = produced[value[1]] if value[1] < len(produced) else None
            if isinstance(kind, str) and kind != "*" and received not in (kind, "*"):
                return {
                    "type": "return_type_mismatch",
                    "message": "Return type mismatch between linked nodes",
                    "details": f"{name}, received_type({received}) mismatch input_type({kind})",
                    "extra_info": {
                        "input_name": name,
                        "received_type": received,
                        "linked_node": value,
                    },
                }
            return None
        choices = (
            kind if isinstance(kind, list) else options.get("options") if kind == "COMBO" else None
        )
        if choices is not None:
            if value not in choices:
                shown = f"(list of length {len(choices)})" if len(choices) > 10 else str(choices)
                return {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": f"{name}: '{value}' not in {shown}",
                    "extra_info": {"input_name": name, "received_value": value},
                }
            return None
        if kind in ("INT", "FLOAT"):
            try:
                number = int(value) if kind == "INT" else float(value)
            except (TypeError, ValueError) as exc:
                return {
                    "type": "invalid_input_type",
                    "message": f"Failed to convert an input value to a {kind} value",
                    "details": f"{name}, {value}, {exc}",
                    "extra_info": {"input_name": name, "received_value": value},
                }
            if "min" in options and number < options["min"]:
                return {
                    "type": "value_smaller_than_min",
                    "message": f"Value {number} smaller than min of {options['min']}",
                    "details": name,
                    "extra_info": {"input_name": name, "received_value": value},
                }
            if "max" in options and number > options["max"]:
                return {
                    "type": "value_bigger_than_max",
                    "message": f"Value {number} bigger than max of {options['max']}",
                    "details": name,
                    "extra_info": {"input_name": name, "received_value": value},
                }
        return None


class SwappableApp:
    """An ASGI app forwarding to `target`: one uvicorn server for many tests, each with
    a fresh fake (starting a server costs ~0.4 s)."""

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def _previews_first(sequence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The frames as a client that announced preview metadata gets them: each step's
    preview (event 4) comes before its `progress` message, as in
    ws_success_feature_flags.jsonl (ComfyUI sends it from update_progress, before the
    "progress" hook message; the event-1 preview of other clients comes after it)."""
    frames = list(sequence)
    for index in range(len(frames) - 1):
        if frames[index].get("type") == "progress" and frames[index + 1].get("binary"):
            frames[index], frames[index + 1] = frames[index + 1], frames[index]
    return frames


def _proxy_error(status: int) -> Response:
    """nginx's error page, as a reverse proxy in front of ComfyUI sends it."""
    reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
    title = f"{status} {reason.get(status, 'Error')}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Response(page, status_code=status, media_type="text/html")


def _invalid(kind: str, message: str, details: str) -> Response:
    return JSONResponse(
        {
            "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
            "node_errors": {},
        },
        status_code=400,
    )
