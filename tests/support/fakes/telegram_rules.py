"""What the fake Bot API checks the way Telegram does (the protocol's rules): limits,
text length in UTF-16 units, public-URL buttons, replies that exist, photos that decode;
the records a test reads (calls, files, faults, violations). ``WireChecks`` holds the
checks that need the server's state (its messages and files).
"""

from __future__ import annotations

import io
import ipaddress
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

TOKEN = "123456789:AAFakeTokenForTests_0123456789abcdefXYZ"
DOWNLOAD_CAP = 20 * 1024 * 1024
CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
JSON_FIELDS = {
    "reply_markup",
    "media",
    "allowed_updates",
    "commands",
    "reply_parameters",
    "scope",
    "entities",
    "caption_entities",
    "link_preview_options",
}


def tg_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class ApiError(Exception):
    def __init__(self, code: int, description: str, *, violation: bool = True, retry_after: int | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.violation = violation
        self.retry_after = retry_after


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float  # time.monotonic() when the request arrived
    status: int = 200
    result: Any = None
    error: str | None = None

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        try:
            return int(value)
        except (TypeError, ValueError):
            return None


@dataclass
class StoredFile:
    file_id: str
    unique_id: str
    data: bytes
    declared_size: int | None
    path: str


@dataclass
class Fault:
    """An injected failure: answer ``method`` (for ``chat_id``, when set) with an error."""

    method: str
    code: int
    description: str
    chat_id: int | None = None
    times: int = 1
    retry_after: int | None = None


@dataclass
class Violation:
    method: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)


def public_url_problem(url: Any) -> str | None:
    """Why Telegram would refuse ``url`` in a URL button, or None."""
    if not isinstance(url, str) or not url:
        return "empty URL"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        parts.port  # noqa: B018
    except ValueError:
        return "unparsable URL"
    if parts.scheme not in ("http", "https", "tg"):
        return f"unsupported URL protocol {parts.scheme!r}"
    if parts.scheme == "tg":
        return None
    if not host:
        return "URL without a host"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith((".local", ".localhost", ".internal")) or "." not in host:
            return f"host {host!r} is not public"
        if all(re.fullmatch(r"0x[0-9a-f]*|[0-9]+", label) for label in host.split(".")):
            return f"host {host!r} is a numeric address"
        return None
    if not ip.is_global:
        return f"address {ip} is not public"
    return None


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that *declares* width×height pixels but carries almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class WireChecks:
    """The per-request checks of :class:`FakeBotAPI` (mixed into it)."""

    def _chat_id(self, params: dict[str, Any]) -> int:
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat_id is empty") from None
        with self._lock:
            if chat_id not in self._chats:
                raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    def _check_text(self, text: Any, limit: int, what: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, f"Bad Request: {what} must be non-empty")
        if tg_len(text) > limit:
            raise ApiError(400, f"Bad Request: {what} is too long")

    def _check_markup(self, markup: Any) -> None:
        if markup is None:
            return
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            raise ApiError(400, "Bad Request: unsupported reply_markup")
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or sum(len(r) for r in rows) > 100:
            raise ApiError(400, "Bad Request: too many buttons")
        for row in rows:
            if len(row) > 8:
                raise ApiError(400, "Bad Request: too many buttons in a row")
            for button in row:
                if not str(button.get("text", "")).strip():
                    raise ApiError(400, "Bad Request: button text must be non-empty")
                actions = ("url", "callback_data", "switch_inline_query", "pay", "login_url", "web_app")
                kinds = [k for k in actions if k in button]
                if len(kinds) != 1:
                    raise ApiError(400, "Bad Request: can't parse inline keyboard button: exactly one action needed")
                if "callback_data" in button:
                    data = str(button["callback_data"]).encode()
                    if not 1 <= len(data) <= 64:
                        raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                if "url" in button:
                    problem = public_url_problem(button["url"])
                    if problem:
                        raise ApiError(400, f"Bad Request: BUTTON_URL_INVALID ({problem})")

    def _check_reply(self, chat_id: int, params: dict[str, Any]) -> int | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            target, lenient = reply.get("message_id"), bool(reply.get("allow_sending_without_reply"))
        else:
            target = params.get("reply_to_message_id")
            lenient = str(params.get("allow_sending_without_reply", "")).lower() == "true"
        if target is None:
            return None
        target = int(target)
        with self._lock:
            exists = (chat_id, target) in self._messages
        if not exists and not lenient:
            raise ApiError(400, "Bad Request: message to be replied not found")
        return target if exists else None

    def _photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """Check an uploaded photo as Telegram does and store it, returning its PhotoSizes."""
        if not data:
            raise ApiError(400, "Bad Request: file must be non-empty")
        if len(data) > 10 * 1024 * 1024:
            raise ApiError(400, "Bad Request: photo is too big")
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                w, h = img.size
        except Exception:
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
        if w + h > 10000 or max(w, h) / max(1, min(w, h)) > 20:
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        stored = self.add_file(data, kind="photos")
        return [
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.unique_id,
                "width": w,
                "height": h,
                "file_size": len(data),
            }
        ]

    def _resolve_photo(self, ref: Any, files: dict[str, bytes], field_name: str) -> list[dict[str, Any]]:
        if isinstance(ref, str) and ref.startswith("attach://"):
            name = ref[len("attach://") :]
            if name not in files:
                raise ApiError(400, f"Bad Request: {field_name}: attached file {name} not found")
            return self._photo_sizes(files[name])
        if isinstance(ref, str) and ref in self._files:
            stored = self._files[ref]
            return self._photo_sizes(stored.data)
        if isinstance(ref, str) and ref.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: failed to get HTTP URL content")
        raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")

    def _bot_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        msg = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": self._chats[chat_id],
            "from": {"id": self.bot_id, "is_bot": True, "first_name": "FashionBot", "username": self.bot_username},
            **{k: v for k, v in content.items() if v is not None},
        }
        with self._lock:
            self._messages[(chat_id, msg["message_id"])] = msg
        return msg
