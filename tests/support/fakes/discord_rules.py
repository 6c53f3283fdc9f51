"""Discord's limits and what the fake checks the way Discord does (embeds, components,
commands, links), and the records a test reads (sent messages, interactions,
attachments). ``MessageRules`` holds the checks, mixed into :class:`FakeDiscord`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

DISCORD_EPOCH_MS = 1420070400000
API = "/api/v10"

# Gateway opcodes
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, HELLO, HEARTBEAT_ACK, INVALID_SESSION = 0, 1, 2, 6, 10, 11, 9

# Intents
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT

EPHEMERAL = 1 << 6
LOADING = 1 << 7
ALLOWED_BOT_FLAGS = EPHEMERAL | (1 << 2) | (1 << 12)  # ephemeral, suppress embeds, suppress notifications

# Limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits, components, ...)
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_EMBED_TOTAL = 6000
MAX_ROWS = 5
MAX_ROW_BUTTONS = 5
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
MAX_FILES = 10
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
ANSWER_WITHIN = 3.0  # seconds to acknowledge an interaction
NAME_RE = re.compile(r"^[-_\w]{1,32}$")

INTERACTION_CALLBACK_TYPES = {
    2: {4, 5, 9},  # application command: message, deferred message, modal
    3: {4, 5, 6, 7, 9},  # component: + deferred update, update
    4: {8},  # autocomplete: the suggestions
}
MAX_CHOICES = 25
INTEGRATION_TYPES = {0, 1}  # guild install, user install
CONTEXTS = {0, 1, 2}  # guild, bot DM, private channel (DMs and group DMs between users)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Problem(Exception):
    """Something Discord would refuse: (HTTP status, Discord error code, message)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class FakeAttachment:
    id: str
    channel_id: str
    filename: str
    data: bytes
    content_type: str | None
    size: int  # declared (what Discord tells the bot)
    status: int = 200  # what the CDN answers

    def payload(self, base: str) -> dict[str, Any]:
        url = f"{base}/cdn/attachments/{self.channel_id}/{self.id}/{self.filename}"
        out: dict[str, Any] = {
            "id": self.id,
            "filename": self.filename,
            "size": self.size,
            "url": url,
            "proxy_url": url,
        }
        if self.content_type is not None:
            out["content_type"] = self.content_type
        return out


@dataclass
class SentMessage:
    """A message the bot made, as Discord stores it."""

    data: dict[str, Any]
    files: dict[str, bytes]
    via: str  # "channel", "callback", "followup", "deferred"
    interaction: FakeInteraction | None = None
    edits: int = 0

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def channel_id(self) -> str:
        return self.data["channel_id"]

    @property
    def content(self) -> str:
        return self.data.get("content") or ""

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.data.get("embeds") or []

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.data.get("components") or []

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    def buttons(self) -> list[dict[str, Any]]:
        return [c for row in self.components for c in row.get("components", []) if c.get("type") == 2]

    def custom_ids(self) -> list[str]:
        return [b["custom_id"] for b in self.buttons() if "custom_id" in b]


@dataclass
class FakeInteraction:
    id: str
    token: str
    type: int
    payload: dict[str, Any]
    created: float
    user_id: str
    callback_type: int | None = None
    callback_at: float | None = None
    original: SentMessage | None = None  # the message the response created / the component's message
    followups: list[SentMessage] = field(default_factory=list)
    answered: bool = False  # a message with the answer exists (not just "thinking…")
    choices: list[dict[str, Any]] = field(default_factory=list)  # autocomplete suggestions sent

    @property
    def channel_id(self) -> str:
        return self.payload["channel_id"]


class MessageRules:
    """Checks on what the bot sends: each returns the problems found (mixed into the fake)."""

    def check_message(
        self, payload: dict[str, Any], files: dict[int, tuple[str, bytes]], *, interaction: bool, edit: bool = False
    ) -> list[str]:
        errors: list[str] = []
        content = payload.get("content")
        if content is not None and len(str(content)) > MAX_CONTENT:
            errors.append(f"content is {len(str(content))} characters (max {MAX_CONTENT})")
        embeds = payload.get("embeds") or []
        if len(embeds) > MAX_EMBEDS:
            errors.append(f"{len(embeds)} embeds (max {MAX_EMBEDS})")
        uploaded = {name for name, _ in files.values()}
        for a in payload.get("attachments") or []:
            if "id" in a and isinstance(a["id"], int) and a["id"] not in files:
                errors.append(f"attachments[] names file index {a['id']} that wasn't uploaded")
        total = 0
        for n, e in enumerate(embeds):
            title, desc = e.get("title") or "", e.get("description") or ""
            if len(title) > MAX_EMBED_TITLE:
                errors.append(f"embed {n}: title is {len(title)} characters (max {MAX_EMBED_TITLE})")
            if len(desc) > MAX_EMBED_DESCRIPTION:
                errors.append(f"embed {n}: description is {len(desc)} characters (max {MAX_EMBED_DESCRIPTION})")
            fields = e.get("fields") or []
            if len(fields) > MAX_EMBED_FIELDS:
                errors.append(f"embed {n}: {len(fields)} fields (max {MAX_EMBED_FIELDS})")
            for f in fields:
                if len(f.get("name") or "") > 256 or len(f.get("value") or "") > 1024:
                    errors.append(f"embed {n}: a field is too long")
            footer = (e.get("footer") or {}).get("text") or ""
            author = (e.get("author") or {}).get("name") or ""
            if len(footer) > 2048 or len(author) > 256:
                errors.append(f"embed {n}: footer or author too long")
            total += len(title) + len(desc) + len(footer) + len(author)
            total += sum(len(f.get("name") or "") + len(f.get("value") or "") for f in fields)
            if e.get("url") is not None and not _is_http_url(e["url"]):
                errors.append(f"embed {n}: url {e['url']!r} is not an http(s) URL")
            for key in ("thumbnail", "image"):
                url = (e.get(key) or {}).get("url")
                if url is None:
                    continue
                if url.startswith("attachment://"):
                    if not edit and url[len("attachment://") :] not in uploaded:
                        errors.append(f"embed {n}: {key} {url!r} names no uploaded file (got {sorted(uploaded)})")
                elif not _is_http_url(url):
                    errors.append(f"embed {n}: {key} url {url!r} is neither http(s) nor attachment://")
        if total > MAX_EMBED_TOTAL:
            errors.append(f"embeds hold {total} characters together (max {MAX_EMBED_TOTAL})")
        errors += self._check_components(payload.get("components") or [])
        if len(files) > MAX_FILES:
            errors.append(f"{len(files)} files (max {MAX_FILES})")
        size = sum(len(b) for _, b in files.values())
        if size > MAX_UPLOAD_BYTES:
            errors.append(f"files total {size} bytes (max {MAX_UPLOAD_BYTES})")
        flags = int(payload.get("flags") or 0)
        if flags & ~ALLOWED_BOT_FLAGS:
            errors.append(f"flags {flags} not allowed")
        if flags & EPHEMERAL and not interaction:
            errors.append("ephemeral flag on a channel message")
        if not edit and not (content or embeds or files or payload.get("components") or payload.get("sticker_ids")):
            errors.append("Cannot send an empty message")
        return errors

    def _check_components(self, rows: list[dict[str, Any]]) -> list[str]:
        errors: list[str] = []
        if len(rows) > MAX_ROWS:
            errors.append(f"{len(rows)} action rows (max {MAX_ROWS})")
        seen: set[str] = set()
        for r, row in enumerate(rows):
            if row.get("type") != 1:
                errors.append(f"component {r} at top level is type {row.get('type')}, not an action row")
                continue
            items = row.get("components") or []
            if not 1 <= len(items) <= MAX_ROW_BUTTONS:
                errors.append(f"row {r} has {len(items)} components (1..{MAX_ROW_BUTTONS})")
            for b in items:
                if b.get("type") != 2:
                    continue
                style, cid, label = b.get("style"), b.get("custom_id"), b.get("label")
                if style not in (1, 2, 3, 4, 5, 6):
                    errors.append(f"row {r}: button style {style!r}")
                if label is not None and len(label) > MAX_BUTTON_LABEL:
                    errors.append(f"row {r}: button label longer than {MAX_BUTTON_LABEL}")
                if not label and not b.get("emoji"):
                    errors.append(f"row {r}: a button needs a label or an emoji")
                if style == 5:
                    if not b.get("url") or cid is not None:
                        errors.append(f"row {r}: a link button needs a url and no custom_id")
                    continue
                if not cid:
                    errors.append(f"row {r}: a button without a custom_id")
                    continue
                if len(cid) > MAX_CUSTOM_ID:
                    errors.append(f"row {r}: custom_id {cid!r} is longer than {MAX_CUSTOM_ID}")
                if cid in seen:
                    errors.append(f"custom_id {cid!r} appears twice")
                seen.add(cid)
        return errors

    def _check_command(self, c: dict[str, Any]) -> list[str]:
        errors: list[str] = []
        name = c.get("name") or ""
        ctype = c.get("type", 1)
        if ctype == 1 and (not NAME_RE.fullmatch(name) or name != name.lower()):
            errors.append(f"command name {name!r} is invalid")
        if ctype == 1 and not 1 <= len(c.get("description") or "") <= 100:
            errors.append(f"/{name}: description must be 1-100 characters")
        if ctype in (2, 3):  # user / message context menus: any 1-32 characters, no description
            if not 1 <= len(name) <= 32:
                errors.append(f"context menu name {name!r} must be 1-32 characters")
            if c.get("description"):
                errors.append(f"context menu {name!r} can't have a description")
            if c.get("options"):
                errors.append(f"context menu {name!r} can't have options")
        elif ctype != 1:
            errors.append(f"command {name!r}: type {ctype!r}")
        for key, allowed in (("integration_types", INTEGRATION_TYPES), ("contexts", CONTEXTS)):
            value = c.get(key)
            if value is not None and (not isinstance(value, list) or not set(value) <= allowed or not value):
                errors.append(f"{name!r}: {key} {value!r} (allowed: {sorted(allowed)})")
        options = c.get("options") or []
        if len(options) > 25:
            errors.append(f"/{name}: more than 25 options")
        optional_seen = False
        names: set[str] = set()
        for o in options:
            oname = o.get("name") or ""
            if not NAME_RE.fullmatch(oname) or oname != oname.lower():
                errors.append(f"/{name}: option name {oname!r} is invalid")
            if oname in names:
                errors.append(f"/{name}: option {oname!r} twice")
            names.add(oname)
            if not 1 <= len(o.get("description") or "") <= 100:
                errors.append(f"/{name} {oname}: description must be 1-100 characters")
            if o.get("type") not in range(1, 12):
                errors.append(f"/{name} {oname}: option type {o.get('type')!r}")
            if o.get("required"):
                if optional_seen:
                    errors.append(f"/{name}: required option {oname!r} after an optional one")
            else:
                optional_seen = True
            if len(o.get("choices") or []) > 25:
                errors.append(f"/{name} {oname}: more than 25 choices")
            if o.get("autocomplete") and o.get("choices"):
                errors.append(f"/{name} {oname}: autocomplete and choices together")
        return errors


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)
