"""Refuse, in one sentence, a request that names a server file it did not upload.

Gradio checks file paths in event payloads itself, but before the app's code runs and without a
message: the caller gets `{"error": null}` and the server log a traceback. This ASGI middleware
looks at the JSON of event calls first (`/gradio_api/call/...`, `/gradio_api/queue/join`) and
answers HTTP 400 with a sentence when a file in it lies outside the folders the app serves from,
or when the picture of `/caption` is a bare string instead of an uploaded file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .models import shown

PICTURE_ENDPOINTS = ("caption", "caption_if_image")  # their first input is the picture
SHOWN = 60  # at most this much of a path is echoed


def _files(value: Any) -> Iterator[str]:
    """Every file path named in a payload (Gradio's FileData: a dict with a "path")."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield value["path"]
        for v in value.values():
            yield from _files(v)
    elif isinstance(value, list):
        for v in value:
            yield from _files(v)


def payload_problem(route: str, body: bytes, allowed: list[Path]) -> str | None:
    """Why this event call must be refused, in one sentence; None to let it through."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return None  # not JSON: Gradio answers that itself
    if not isinstance(payload, dict):
        return None
    data = payload.get("data")
    name = route.rstrip("/").rsplit("/", 1)[-1]
    if name in PICTURE_ENDPOINTS and isinstance(data, list) and data and isinstance(data[0], str):
        return (
            "The picture must be an uploaded file (POST /gradio_api/upload, then "
            '{"path": ..., "meta": {"_type": "gradio.FileData"}}), not a bare string.'
        )
    for path in _files(data):
        try:
            resolved = Path(path).resolve()
        except (OSError, ValueError):
            return f"The file {shown(path, SHOWN)} cannot be used: upload the picture to this app first."
        if not any(resolved.is_relative_to(folder) for folder in allowed):
            return (
                f"The file {shown(path, SHOWN)} was not uploaded to this app: upload the picture "
                "first (POST /gradio_api/upload) and send the path it returns."
            )
    return None


class RefuseForeignFiles:
    """ASGI middleware; `allowed()` gives the folders files may come from (read per request)."""

    def __init__(self, app, allowed: Callable[[], list[Path]]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        watched = (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and ("/gradio_api/call/" in path or path.endswith("/gradio_api/queue/join"))
        )
        if not watched:
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = payload_problem(path, body, self.allowed())
        if problem:
            answer = json.dumps({"error": problem}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": answer})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
