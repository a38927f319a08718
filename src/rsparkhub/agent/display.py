"""Kernel output → session events, for one execution.

``Display`` turns the iopub messages and reply payloads of a running ``Execution`` into
``StreamEvent``/``ResultEvent``/``ErrorEvent``/``PlotEvent``/``HelpEvent``/``StatusEvent``
in the outbox: ANSI colours stripped, the agent's own helper frames cut from tracebacks,
figures split from their text, plot keys recorded for re-rendering. It runs nothing and
owns no state beyond the ``Execution`` it is handed.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rsparkhub import protocol as P
from rsparkhub.agent.introspect import HELP_MIME, PLOT_MIME, Introspector, decode_mime_json

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
OVERSTRIKE_RE = re.compile(r".\x08")
IMAGE_MIMES = ("image/png", "image/svg+xml")
DROP_RESULT_MIMES = ("text/latex", "text/markdown")

Emit = Callable[[Any], int]
IopubHandler = Callable[[dict[str, Any]], None]


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def png_size(data: bytes) -> tuple[int | None, int | None]:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None, None


@dataclass
class Execution:
    """The request running in a kernel now (what an interrupt applies to)."""

    request_id: str
    language: P.Language
    plot_ids: list[str] = field(default_factory=list)
    interrupted: bool = False


class Display:
    def __init__(self, emit: Emit, introspector: Introspector) -> None:
        self.emit = emit
        self.introspector = introspector

    def page_payloads(self, request_id: str, reply: dict[str, Any]) -> None:
        for payload in reply.get("payload") or []:
            if not isinstance(payload, dict) or payload.get("source") != "page":
                continue
            data = payload.get("data") or {}
            if self.help_event(request_id, data):
                continue
            out: dict[str, Any] = {}
            if isinstance(data.get("text/plain"), str):
                out["text/plain"] = OVERSTRIKE_RE.sub("", strip_ansi(data["text/plain"]))
            if isinstance(data.get("text/html"), str):
                out["text/html"] = data["text/html"]
            if out:
                self.emit(P.ResultEvent(request_id=request_id, data=out))

    def iopub_handler(self, ex: Execution) -> IopubHandler:
        rid = ex.request_id

        def handle(msg: dict[str, Any]) -> None:
            mtype = msg.get("msg_type")
            content = msg.get("content") or {}
            if mtype == "stream":
                name = content.get("name")
                text = content.get("text") or ""
                if name in ("stdout", "stderr") and text:
                    self.emit(P.StreamEvent(request_id=rid, name=name, text=text))
            elif mtype in ("execute_result", "display_data"):
                self.display(ex, content)
            elif mtype == "error":
                self.emit(
                    P.ErrorEvent(
                        request_id=rid,
                        ename=str(content.get("ename") or "Error"),
                        evalue=strip_ansi(str(content.get("evalue") or "")),
                        traceback=[
                            line
                            for line in (strip_ansi(str(t)) for t in content.get("traceback") or [])
                            if not _is_helper_frame(line)
                        ],
                    )
                )
            elif mtype == "status":
                state = content.get("execution_state")
                if state == "busy" or state == "idle":
                    self.emit(P.StatusEvent(language=ex.language, state=state))

        return handle

    def help_event(self, request_id: str, data: dict[str, Any]) -> bool:
        """A help request of user code (``?mean``, ``help(len)``, ``??words``)."""
        info = decode_mime_json(data.get(HELP_MIME)) if HELP_MIME in data else None
        if info is None:
            return False
        language = info.get("language")
        self.emit(
            P.HelpEvent(
                request_id=request_id,
                language=language if language in P.LANGUAGES else "r",
                kind="search" if info.get("kind") == "search" else "topic",
                topic=_str_or_none(info.get("topic")),
                package=_str_or_none(info.get("package")),
                query=_str_or_none(info.get("query")),
            )
        )
        return True

    def display(self, ex: Execution, content: dict[str, Any]) -> None:
        data = content.get("data") or {}
        metadata = content.get("metadata") or {}
        if self.help_event(ex.request_id, data):
            return
        plot_info = decode_mime_json(data.get(PLOT_MIME)) if PLOT_MIME in data else None
        if plot_info is None and isinstance(metadata.get(PLOT_MIME), dict):
            plot_info = metadata[PLOT_MIME]
        plot_key = str(plot_info["key"]) if plot_info and plot_info.get("key") else None
        data = {k: v for k, v in data.items() if k != PLOT_MIME}
        images = [m for m in IMAGE_MIMES if m in data]
        for mime in images:
            raw = data[mime]
            width: int | None
            height: int | None
            if mime == "image/png":
                if not isinstance(raw, str):
                    continue
                b64 = raw.replace("\n", "")
                try:
                    width, height = png_size(
                        base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4))
                    )
                except ValueError:
                    width, height = None, None
            else:
                text = "".join(raw) if isinstance(raw, list) else str(raw)
                b64 = base64.b64encode(text.encode()).decode()
                width = height = None
            meta_raw = metadata.get(mime)
            meta = meta_raw if isinstance(meta_raw, dict) else {}
            width = width or _int(meta.get("width"))
            height = height or _int(meta.get("height"))
            plot_id = uuid.uuid4().hex
            ex.plot_ids.append(plot_id)
            if plot_key is not None:
                self.introspector.plot_made(plot_id, ex.language, plot_key)
            self.emit(
                P.PlotEvent(
                    request_id=ex.request_id,
                    plot_id=plot_id,
                    renderable=plot_key is not None,
                    mime=mime,
                    width=width,
                    height=height,
                    content_b64=b64,
                )
            )
        rest = {
            k: v
            for k, v in data.items()
            if not k.startswith("image/") and k not in DROP_RESULT_MIMES
        }
        if images and set(rest) <= {"text/plain"}:
            return  # the text/plain of a figure is just "<Figure ...>" / "plot without title"
        if rest:
            self.emit(P.ResultEvent(request_id=ex.request_id, data=rest))


def _is_helper_frame(line: str) -> bool:
    """Traceback entries of the agent's own run/source helper (not the user's code)."""
    return "__import__('_rsparkhub')" in line or line.startswith("File <string>:")


def _str_or_none(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value not in (None, "") else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
