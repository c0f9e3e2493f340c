"""An HTTP + websocket client for one ComfyUI server, and nothing else.

Every transport failure is mapped here, once, into the provider error tree: a caller
never sees an httpx or websockets exception. Messages name the server's URL so a
person knows which of several ComfyUI servers is at fault.

    client = ComfyUIClient("http://127.0.0.1:8188")
    with client.connect(client_id) as socket:           # /ws?clientId=…
        queued = client.queue_prompt(workflow, client_id)
        while (message := socket.receive(timeout=0.5)) ...  # ServerMessage | PreviewImage
    entry = client.history(queued.prompt_id)
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from spoonfeeder.errors import (
    ComfyUIPromptRejected,
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    ProviderServerError,
    ProviderUnavailable,
)
from spoonfeeder.ids import shown

PROVIDER = "comfyui"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
WS_OPEN_TIMEOUT = 5.0
WS_CLOSE_TIMEOUT = 2.0  # a worker never waits long for a close handshake
# Binary websocket frame types (comfy_execution / server.py BinaryEventTypes).
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
IMAGE_FORMATS = {1: "image/jpeg", 2: "image/png"}
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class ServerMessage:
    """A JSON text frame: `{"type": …, "data": {…}}`."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_id(self) -> str | None:
        value = self.data.get("prompt_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class PreviewImage:
    """A binary preview frame, decoded: the image bytes as ComfyUI encoded them."""

    image: bytes = field(repr=False)
    mime: str
    node_id: str | None = None
    prompt_id: str | None = None


@dataclass(frozen=True)
class QueuedPrompt:
    """ComfyUI's answer to an accepted `POST /prompt`."""

    prompt_id: str
    number: int
    node_errors: dict[str, Any] = field(default_factory=dict)  # other outputs may still run


@dataclass(frozen=True)
class RetryWindow:
    """How long a client keeps retrying a ComfyUI that answers 5xx or cannot be reached —
    a reverse proxy answers 502/503 while ComfyUI restarts. 0 seconds: no retries (what
    the UI wants: say so at once). `sleep` and `clock` are injectable for tests."""

    seconds: float = 0.0
    first_delay: float = 0.5
    max_delay: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


class _Retryable(Exception):
    """One failed attempt worth another: a 5xx answer or a transport failure."""

    def __init__(self, error: Exception, what: str) -> None:
        super().__init__(what)
        self.error = error  # what to raise if the window closes
        self.what = what  # "HTTP 502 on /prompt", "no connection"


def decode_binary_frame(frame: bytes) -> PreviewImage | None:
    """The preview image in a binary frame; None for frame types that carry none."""
    if len(frame) < 8:
        return None
    event, second = struct.unpack(">II", frame[:8])
    if event == PREVIEW_IMAGE:
        return PreviewImage(frame[8:], IMAGE_FORMATS.get(second, "image/jpeg"))
    if event == PREVIEW_IMAGE_WITH_METADATA:
        try:
            meta = json.loads(frame[8 : 8 + second])
        except ValueError:
            return None
        node = meta.get("display_node_id") or meta.get("node_id")
        return PreviewImage(
            frame[8 + second :],
            str(meta.get("image_type") or "image/jpeg"),
            str(node) if node is not None else None,
            meta.get("prompt_id"),
        )
    return None


def websocket_url(base_url: str, client_id: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, f"clientId={client_id}", ""))


def describe_rejection(body: Any, prompt: Mapping[str, Any]) -> ComfyUIPromptRejected:
    """One sentence naming each node and input ComfyUI's validation complained about."""
    if not isinstance(body, dict):
        return ComfyUIPromptRejected(f"ComfyUI rejected the workflow: {str(body)[:300]}")
    node_errors = body.get("node_errors") or {}
    parts: list[str] = []
    first: tuple[str | None, str | None] = (None, None)
    for node_id, entry in node_errors.items():
        node = prompt.get(node_id) if isinstance(prompt, Mapping) else None
        class_type = entry.get("class_type") or (node or {}).get("class_type") or "?"
        title = ((node or {}).get("_meta") or {}).get("title")
        label = f"node {node_id} ({class_type})"
        if title and title != class_type:
            label = f"node {node_id} “{title}” ({class_type})"
        for error in entry.get("errors") or []:
            input_name = (error.get("extra_info") or {}).get("input_name")
            if not input_name and error.get("type") == "required_input_missing":
                input_name = error.get("details") or None
            where = f"{label} input '{input_name}'" if input_name else label
            text = error.get("message") or "invalid"
            details = error.get("details")
            if details and input_name:  # "sampler_name: 'x' not in …" repeats the input
                details = details.removeprefix(f"{input_name}: ").removeprefix(f"{input_name}, ")
            if details and details != input_name:
                text = f"{text}: {details}"
            parts.append(f"{where}: {text}")
            if first == (None, None):
                first = (node_id, input_name)
    if not parts:
        error = body.get("error") or {}
        text = error.get("message") if isinstance(error, dict) else str(error)
        details = error.get("details") if isinstance(error, dict) else None
        parts.append(f"{text or 'invalid workflow'}" + (f" ({details})" if details else ""))
        if details and details.startswith("Node ID '#"):
            first = (details.removeprefix("Node ID '#").rstrip("'"), None)
    return ComfyUIPromptRejected(
        "ComfyUI rejected the workflow: " + "; ".join(parts),
        node_errors=node_errors,
        node_id=first[0],
        input_name=first[1],
    )


class ComfyUISocket:
    """The `/ws` connection of one client id; `receive()` never raises on a timeout."""

    def __init__(self, connection: ClientConnection, url: str) -> None:
        self._connection = connection
        self._url = url
        self.closed = False

    def receive(self, timeout: float) -> ServerMessage | PreviewImage | None:
        """The next message; None if none arrived within `timeout` seconds (or the frame
        carried nothing we use). Raises ProviderUnavailable once the socket is gone."""
        try:
            frame = self._connection.recv(timeout=timeout)
        except TimeoutError:
            return None
        except (ConnectionClosed, OSError) as exc:
            self.closed = True
            raise ProviderUnavailable(
                f"The websocket to ComfyUI at {self._url} closed ({exc})", provider=PROVIDER
            ) from None
        if isinstance(frame, bytes):
            return decode_binary_frame(frame)
        try:
            message = json.loads(frame)
        except ValueError:
            return None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return None
        data = message.get("data")
        return ServerMessage(message["type"], data if isinstance(data, dict) else {})

    def __iter__(self) -> Iterator[ServerMessage | PreviewImage]:
        """Every message until the socket closes (blocking)."""
        while not self.closed:
            try:
                message = self.receive(timeout=3600)
            except ProviderUnavailable:
                return
            if message is not None:
                yield message

    def close(self) -> None:
        self.closed = True
        self._connection.close()

    def __enter__(self) -> ComfyUISocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class ComfyUIClient:
    """Blocking calls to one ComfyUI server. Safe to share between threads."""

    @classmethod
    def for_credentials(cls, credentials: Any, retry: RetryWindow | None = None) -> ComfyUIClient:
        """A client for a stored setting or profile (`profiles.Credentials`): its URL, its
        key, and its `timeout` option (seconds) when it sets one."""
        seconds = (credentials.options or {}).get("timeout")
        timeout = httpx.Timeout(seconds, connect=5.0) if seconds else DEFAULT_TIMEOUT
        return cls(credentials.url, api_key=credentials.api_key, timeout=timeout, retry=retry)

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryWindow | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or RetryWindow()
        # A key is for a ComfyUI behind an authenticating proxy: sent as a bearer token,
        # as the connection test does.
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=self._headers)

    # ----- websocket ---------------------------------------------------------

    def connect(self, client_id: str, *, preview_metadata: bool = True) -> ComfyUISocket:
        """Open `/ws?clientId=…`. Messages about prompts queued with this client id come
        here; with `preview_metadata` previews say which prompt and node they belong to."""
        url = websocket_url(self.url, client_id)
        try:
            # Entered as a context manager, as websockets ≥ 17.1 asks; exited by close().
            connection = ws_connect(
                url,
                additional_headers=self._headers or None,
                open_timeout=WS_OPEN_TIMEOUT,
                close_timeout=WS_CLOSE_TIMEOUT,
                max_size=None,
            ).__enter__()
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise self._auth_error(status) from None
            raise ProviderUnavailable(
                f"ComfyUI at {self.url} refused the websocket (HTTP {status})", provider=PROVIDER
            ) from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise self._unreachable(exc) from None
        if preview_metadata:
            try:
                connection.send(
                    json.dumps(
                        {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
                    )
                )
            except (ConnectionClosed, OSError) as exc:
                connection.close()
                raise self._unreachable(exc) from None
        return ComfyUISocket(connection, self.url)

    # ----- HTTP --------------------------------------------------------------

    def queue_prompt(
        self,
        prompt: Mapping[str, Any] | str,
        client_id: str,
        *,
        extra_data: Mapping[str, Any] | None = None,
    ) -> QueuedPrompt:
        """POST /prompt. A `prompt` given as text is posted as it is: ComfyUI receives
        those very bytes (and writes them, parsed in their order, into every PNG).
        Raises ComfyUIPromptRejected (naming node and input) if the server refuses it."""
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
        # Our own prompt id (ComfyUI keeps one it is given): after a failure that may have
        # reached the server, the id tells whether it was queued before posting again.
        prompt_id = str(uuid.uuid4())
        body = '{"prompt": ' + text + ', "client_id": ' + json.dumps(client_id)
        body += ', "prompt_id": ' + json.dumps(prompt_id)
        if extra_data:
            body += ', "extra_data": ' + json.dumps(dict(extra_data))
        body += "}"

        tries = 0

        def post() -> httpx.Response | None:
            nonlocal tries
            tries += 1
            # An earlier attempt may have reached the server (a lost answer): ask first.
            if tries > 1 and self._knows_prompt_now(prompt_id):
                return None
            response = self._attempt("POST", "/prompt", content=body.encode(), headers=JSON_HEADERS)
            if response.status_code >= 500:
                raise _Retryable(self._status_error(response, "/prompt"), _status(response))
            return response

        response = self._retrying("/prompt", post)
        if response is None:  # an earlier attempt got through after all
            return QueuedPrompt(prompt_id, 0, {})
        if response.status_code == 400:
            parsed = json.loads(text) if isinstance(prompt, str) else prompt
            raise describe_rejection(_json_or_text(response), parsed)
        self._raise_for_status(response, "/prompt")
        data = self._json(response, "/prompt")
        if not isinstance(data, dict) or not isinstance(data.get("prompt_id"), str):
            raise ProviderServerError(
                f"ComfyUI at {self.url} accepted the prompt but returned no prompt_id",
                provider=PROVIDER,
            )
        return QueuedPrompt(
            data["prompt_id"], int(data.get("number") or 0), data.get("node_errors") or {}
        )

    def _knows_prompt_now(self, prompt_id: str) -> bool:
        """Whether the server has this prompt — queued, running, or in its history — asked
        once per endpoint (a server that cannot say raises _Retryable)."""
        for path in ("/queue", f"/history/{prompt_id}"):
            response = self._attempt("GET", path)
            if response.status_code >= 500:
                raise _Retryable(self._status_error(response, path), _status(response))
            self._raise_for_status(response, path)
            data = _json_or_text(response)
            if not isinstance(data, dict):
                continue
            items = [*data.get("queue_running", []), *data.get("queue_pending", [])]
            if prompt_id in data or any(len(i) > 1 and i[1] == prompt_id for i in items):
                return True
        return False

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry of a prompt (prompt, outputs, status, meta); None while the
        server has none (still queued or running, or never run)."""
        data = self._get_json(f"/history/{prompt_id}")
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    def view(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes:
        """The bytes of an output file, exactly as the server sends them."""
        response = self._send("GET", "/view", params=_view_params(filename, subfolder, folder_type))
        return response.content

    def download(
        self,
        filename: str,
        subfolder: str,
        folder_type: str,
        destination: Path,
        max_bytes: int | None = None,
    ) -> int:
        """Stream an output file to `destination` (videos can be large); its size. A
        download cut short starts again from the beginning, within the retry window. A
        file larger than `max_bytes`, an empty one, or a redirect instead of the file is
        refused (ProviderRequestError): a broken or hostile server cannot fill the disk
        or pass off nothing as an image."""
        params = _view_params(filename, subfolder, folder_type)

        def attempt() -> int:
            size = 0
            try:
                with self._stream("GET", "/view", params=params) as response:
                    announced = int(response.headers.get("content-length") or 0)
                    if max_bytes is not None and announced > max_bytes:
                        raise self._too_large(filename, max_bytes)
                    with destination.open("wb") as out:
                        for chunk in response.iter_bytes():
                            size += len(chunk)
                            if max_bytes is not None and size > max_bytes:
                                raise self._too_large(filename, max_bytes)
                            out.write(chunk)
            except (ProviderUnavailable, ProviderServerError) as exc:
                raise _Retryable(exc, exc.message) from None
            if size == 0:
                raise ProviderRequestError(
                    f"ComfyUI at {self.url} sent an empty file for {shown(filename)}",
                    provider=PROVIDER,
                )
            return size

        return self._retrying("/view", attempt)

    def _too_large(self, filename: str, max_bytes: int) -> ProviderRequestError:
        return ProviderRequestError(
            f"ComfyUI at {self.url} sent more than {_size(max_bytes)} for {shown(filename)}, the "
            "most one output may take (COMFYUI_MAX_OUTPUT_BYTES); it was not kept",
            provider=PROVIDER,
        )

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """GET /object_info (every node) or /object_info/{class} (one, or {} if unknown)."""
        return self._get_json(f"/object_info/{node_class}" if node_class else "/object_info")

    def model_files(self, folder: str) -> list[dict[str, Any]]:
        """GET /experiment/models/{folder}: the files of a model folder ("checkpoints",
        "loras"…), each {name, pathIndex, modified, created, size}. ProviderRequestError
        (404) on a server without this listing."""
        files = self._get_json(f"/experiment/models/{folder}")
        return files if isinstance(files, list) else []

    def queue(self) -> dict[str, Any]:
        """GET /queue: `queue_running` and `queue_pending` items, [number, prompt_id, …]."""
        return self._get_json("/queue")

    def delete_from_queue(self, prompt_ids: Sequence[str]) -> None:
        self._send("POST", "/queue", json={"delete": list(prompt_ids)})

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt. With a prompt id, ComfyUI stops it only if it is the one running."""
        self._send("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {})

    def system_stats(self) -> dict[str, Any]:
        return self._get_json("/system_stats")

    def upload_image(
        self,
        data: bytes,
        filename: str,
        *,
        subfolder: str = "",
        folder_type: str = "input",
        overwrite: bool = False,
    ) -> dict[str, Any]:
        """POST /upload/image; ComfyUI answers `{name, subfolder, type}` (the name it kept)."""
        response = self._send(
            "POST",
            "/upload/image",
            files={"image": (filename, data)},
            data={"subfolder": subfolder, "type": folder_type, "overwrite": str(overwrite).lower()},
        )
        return self._json(response, "/upload/image")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ComfyUIClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ----- one place for transport errors ------------------------------------

    def _get_json(self, path: str) -> Any:
        return self._json(self._send("GET", path), path)

    def _json(self, response: httpx.Response, path: str) -> Any:
        """The answer's JSON, or a sentence saying the URL is not a ComfyUI server (a
        proxy's login page answers 200 with HTML); what it sent is never echoed."""
        try:
            return response.json()
        except ValueError:
            raise ProviderServerError(
                f"ComfyUI at {self.url} answered {path} with something that is not JSON "
                "— is this URL a ComfyUI server?",
                provider=PROVIDER,
            ) from None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request that must succeed; 5xx answers and transport failures are retried
        within the retry window."""

        def attempt() -> httpx.Response:
            response = self._attempt(method, path, **kwargs)
            if response.status_code >= 500:
                raise _Retryable(self._status_error(response, path), _status(response))
            self._raise_for_status(response, path)
            return response

        return self._retrying(path, attempt)

    def _attempt(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a transport failure is worth another attempt."""
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            error = self._transport_error(exc)
            what = "no connection" if isinstance(exc, httpx.ConnectError) else "no answer"
            raise _Retryable(error, what) from None

    def _retrying(self, path: str, attempt: Callable[[], Any]) -> Any:
        """`attempt()` until it succeeds or the retry window closes, backing off between
        tries (a _Retryable is a failed try)."""
        window = self.retry
        started = window.clock()
        delay = window.first_delay
        tries = 0
        while True:
            tries += 1
            try:
                return attempt()
            except _Retryable as failure:
                elapsed = window.clock() - started
                if elapsed + delay > window.seconds:
                    raise self._gave_up(failure, path, tries, elapsed) from None
                window.sleep(delay)
                delay = min(delay * 2, window.max_delay)

    def _gave_up(
        self, failure: _Retryable, path: str, tries: int, elapsed: float
    ) -> ProviderUnavailable | ProviderServerError:
        if tries == 1:
            return failure.error  # no retry window: the failure as it is
        tried = f"{tries} tries over {elapsed:.0f} s"
        if isinstance(failure.error, ProviderUnavailable):
            return ProviderUnavailable(
                f"{failure.error.message} (gave up after {tried})", provider=PROVIDER
            )
        return ProviderServerError(
            f"ComfyUI at {self.url} still failed after {tried} ({failure.what} on {path}) "
            "— it may be restarting or down; try again when it is back",
            provider=PROVIDER,
        )

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if not response.is_success:  # an error — or a redirect, never followed
                    response.read()
                    self._raise_for_status(response, path)
                yield response
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        if response.is_success:
            return
        error = self._refusal(response, path)
        error.status = response.status_code
        raise error

    def _refusal(self, response: httpx.Response, path: str) -> ProviderError:
        text = response.text.strip()[:300]
        if response.status_code in (401, 403):
            return self._auth_error(response.status_code)
        if response.status_code == 404:
            return ProviderRequestError(
                f"ComfyUI at {self.url} has nothing at {path} (HTTP 404)"
                + (f": {text}" if text and "404" not in text else ""),
                provider=PROVIDER,
            )
        if response.status_code >= 500:
            return self._status_error(response, path)
        if response.is_redirect:
            return ProviderRequestError(
                f"ComfyUI at {self.url} answered {path} with a redirect "
                f"(HTTP {response.status_code}) instead of the data; it is not followed",
                provider=PROVIDER,
            )
        return ProviderRequestError(
            f"ComfyUI at {self.url} refused {path} (HTTP {response.status_code}): {text}",
            provider=PROVIDER,
        )

    def _status_error(self, response: httpx.Response, path: str) -> ProviderServerError:
        """A 5xx answer: ComfyUI's own text, or a proxy's (an HTML page) said in brief."""
        text = response.text.strip()
        if text.lstrip().startswith("<"):
            text = "a proxy's error page"
        return ProviderServerError(
            f"ComfyUI at {self.url} failed on {path} (HTTP {response.status_code}): {text[:300]}",
            provider=PROVIDER,
            status=response.status_code,
        )

    def _transport_error(self, exc: httpx.HTTPError) -> ProviderUnavailable:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return self._unreachable(exc)
        if isinstance(exc, httpx.TimeoutException):
            return ProviderUnavailable(
                f"ComfyUI at {self.url} did not answer in time — is it overloaded?",
                provider=PROVIDER,
            )
        return ProviderUnavailable(
            f"Lost the connection to ComfyUI at {self.url} ({exc.__class__.__name__})",
            provider=PROVIDER,
        )

    def _auth_error(self, status: int) -> ProviderAuthError:
        what = "refused the API key" if self._headers else "needs an API key"
        return ProviderAuthError(
            f"ComfyUI at {self.url} {what} (HTTP {status}) — check the key of its profile",
            provider=PROVIDER,
        )

    def _unreachable(self, _exc: BaseException) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"ComfyUI is not reachable at {self.url} — is it running?", provider=PROVIDER
        )


def _size(count: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def _status(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}"


def _view_params(filename: str, subfolder: str, folder_type: str) -> dict[str, str]:
    return {"filename": filename, "subfolder": subfolder or "", "type": folder_type or "output"}


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
