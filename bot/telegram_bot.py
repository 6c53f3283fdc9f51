"""The Telegram front-end: a thin python-telegram-bot (v22) adapter over `FashionService`.

A photo (compressed, or an image sent as a file) goes through four small steps:
``checks`` (per-user rate limit, declared size, before any download) →
``download`` → ``service.recommend`` → ``send_results`` (one album of the 10
items, then one message with a link button per item and 👍 / 👎 buttons).
Commands map one-to-one onto service calls; anything else gets a short hint.

Everything slow happens off the event loop (the service runs the model and the
index in its own threads; picture conversion here runs in a worker thread), and
updates are processed concurrently, so one user's photo never holds another's.
Outgoing requests go through PTB's `AIORateLimiter` (Telegram's flood limits;
`RetryAfter` is waited out and retried). The token is never logged.

Public API: `build_application`, `run_telegram`, `main_line_error`.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import io
import ipaddress
import logging
import re
import secrets
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from PIL import Image
from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    PhotoSize,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import render
from bot.guards import TELEGRAM_DOWNLOAD_CAP, RateLimiter, declared_size_problem
from engine.config import Settings
from engine.errors import BadImage, ServiceError
from engine.vision.images import open_image
from engine.types import Recommendation, ScoredItem, TrendProgress, UserRef

log = logging.getLogger(__name__)

PLATFORM = "telegram"
DEFAULT_API_URL = "https://api.telegram.org"

# Telegram's limits (https://core.telegram.org/bots/api), counted the way Telegram
# counts: text lengths in UTF-16 code units, callback data in bytes.
TEXT_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_DATA_MAX = 64
ALBUM_MIN, ALBUM_MAX = 2, 10
CALLBACK_ANSWER_MAX = 200

DISPLAY_SIDE = 280  # tiny catalogue pictures (Fashion-MNIST is 28 px) are upscaled to this
DISPLAY_MAX_SIDE = 1280  # and big ones scaled down: Telegram recompresses anyway
PHOTO_MIN_SIDE = 640  # enough pixels for the backbone; no need to fetch the 2560 px version
PHOTO_CONCURRENCY = 32  # photos downloaded + recommended at once (one embedder batch; more wait)
PICTURE_FETCH_CONCURRENCY = 4  # catalogue pictures read from the database at once
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
COMMANDS = [
    ("help", "What I can do"),
    ("style", "Your personal style"),
    ("trend", "Search shops for a trend, e.g. /trend dress"),
    ("forget", "Delete everything I keep about you"),
    ("about", "Which model and catalogue I use"),
]

# Telegram-specific texts (the shared ones live in bot.render).
WELCOME = "Hi! 👋 I'm a fashion finder.\n\n" + render.HELP
UNKNOWN_COMMAND = "I don't know the command /{name}. " + render.HINT
NOT_AN_IMAGE = (
    "That file isn't a picture I can use. Please send a photo (JPEG, PNG, WebP, GIF or BMP), "
    "as a photo or as a file."
)
TREND_UNAVAILABLE = (
    "Searching shops for a trend isn't available yet, sorry. "
    "Meanwhile, send me a photo and I'll find similar items in the catalogue."
)
TREND_USAGE = "Tell me what to look for, e.g. /trend linen dress"
TREND_STARTED = "Trend “{tag}”: searching shops…"
FORGET_KEPT = "OK, I've kept everything."
BUTTON_EXPIRED = "That button no longer works. Send me a new photo."
NO_RESULTS = "No matching items found."
RESULTS_LINKS = "👆 Your {n} matches. Tap a name to open its shop page; 👍 / 👎 tell me what you like."
RESULTS_NO_LINKS = "👆 Your {n} matches (these catalogue items have no shop pages). 👍 / 👎 tell me what you like."

FEEDBACK_RE = re.compile(r"fb:([+-]):(\d{1,12})")
FORGET_YES, FORGET_NO = "forget:yes", "forget:no"
_LOCAL_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home", ".arpa", ".test", ".invalid", ".example")


class MissingToken(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "No Telegram bot token: set TELEGRAM_BOT_TOKEN to the token @BotFather gave you."
        )


# ---- small pure helpers ------------------------------------------------------------
def tg_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int) -> str:
    """``text`` cut (with an ellipsis) to at most ``limit`` UTF-16 units."""
    if tg_len(text) <= limit:
        return text
    out, used = [], 0
    for ch in text:
        n = tg_len(ch)
        if used + n > limit - 1:
            break
        out.append(ch)
        used += n
    return "".join(out).rstrip() + "…"


def split_message(text: str, limit: int = TEXT_MAX) -> list[str]:
    """Split a long text into messages at line breaks (hard-cutting only overlong lines)."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while tg_len(line) > limit:
            head = fit(line, limit)[:-1]
            if current:
                parts.append(current)
                current = ""
            parts.append(head)
            line = line[len(head) :]
        candidate = f"{current}\n{line}" if current else line
        if tg_len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        parts.append(current)
    return parts or [text[:1] or "…"]


def is_public_url(url: str | None) -> bool:
    """True for an absolute http(s) URL whose host Telegram accepts in a URL button:
    not localhost, not a private / loopback / link-local / reserved address, not a
    single-label or local-only name."""
    if not url or len(url) > 2048 or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        return False
    host = host.rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES):
            return False
        # odd IPv4 spellings (127.1, 0x7f.0.0.1, 2130706433) are addresses too
        return not all(re.fullmatch(r"0x[0-9a-f]*|[0-9]+", label) for label in host.split("."))
    return ip.is_global and not ip.is_multicast


def feedback_data(value: int, item_id: int) -> str:
    return f"fb:{'+' if value > 0 else '-'}:{item_id}"


def parse_feedback(data: str | None) -> tuple[int, int] | None:
    m = FEEDBACK_RE.fullmatch(data or "")
    if not m:
        return None
    return (1 if m.group(1) == "+" else -1), int(m.group(2))


def results_keyboard(items: Sequence[ScoredItem]) -> InlineKeyboardMarkup:
    """One row per item: a link button (public shop links only), then 👍 and 👎."""
    rows = []
    for s in items:
        row = []
        if is_public_url(s.item.url):
            row.append(InlineKeyboardButton(fit(f"{s.rank}. {s.item.title}", 40) + " ↗", url=s.item.url))
            row.append(InlineKeyboardButton("👍", callback_data=feedback_data(1, s.item.id)))
            row.append(InlineKeyboardButton("👎", callback_data=feedback_data(-1, s.item.id)))
        else:
            row.append(InlineKeyboardButton(f"{s.rank}. 👍", callback_data=feedback_data(1, s.item.id)))
            row.append(InlineKeyboardButton(f"{s.rank}. 👎", callback_data=feedback_data(-1, s.item.id)))
        rows.append(row)
    return InlineKeyboardMarkup(rows)


def results_text(items: Sequence[ScoredItem]) -> str:
    template = RESULTS_LINKS if any(is_public_url(s.item.url) for s in items) else RESULTS_NO_LINKS
    return template.format(n=len(items))


def forget_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[
            InlineKeyboardButton("Yes, delete everything", callback_data=FORGET_YES),
            InlineKeyboardButton("Cancel", callback_data=FORGET_NO),
        ]]
    )


def pick_photo(sizes: Sequence[PhotoSize], limit: int) -> PhotoSize | None:
    """The version of a photo to download: among those whose declared size is within
    ``limit``, the smallest with at least PHOTO_MIN_SIDE pixels on its short side (the
    backbone needs no more), else the largest. None when every version is too big."""
    fitting = [p for p in sizes if p.file_size is None or p.file_size <= limit]
    if not fitting:
        return None
    fitting.sort(key=lambda p: p.width * p.height)
    for p in fitting:
        if min(p.width, p.height) >= PHOTO_MIN_SIDE:
            return p
    return fitting[-1]


def display_jpeg(data: bytes) -> bytes:
    """A catalogue picture as a chat-sized JPEG (runs in a worker thread)."""
    img = open_image(data)
    w, h = img.size
    side = max(w, h)
    if side < DISPLAY_SIDE:
        scale = DISPLAY_SIDE / side
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    elif side > DISPLAY_MAX_SIDE:
        img.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=88)
    return out.getvalue()


def placeholder_jpeg() -> bytes:
    """A plain light-grey square for an item whose picture is missing or unreadable."""
    out = io.BytesIO()
    Image.new("RGB", (DISPLAY_SIDE, DISPLAY_SIDE), (236, 236, 236)).save(out, format="JPEG", quality=80)
    return out.getvalue()


class _Lru(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get(self, key: Any, default: Any = None) -> Any:  # noqa: D102
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


# ---- the front-end -------------------------------------------------------------------
class TelegramFrontend:
    """Handlers for one Application; holds the service, the per-user limiter and caches."""

    def __init__(self, service: Any, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.limit_bytes = min(settings.max_image_bytes, TELEGRAM_DOWNLOAD_CAP)
        self.rate = RateLimiter(limit=settings.rate_limit_per_minute, window=60.0)
        # Photos being downloaded or embedded at once: bounds memory (each may be up
        # to limit_bytes) and the database sessions a burst opens, while still giving
        # the embedder a decent micro-batch.
        self.photo_slots = asyncio.Semaphore(PHOTO_CONCURRENCY)
        self.picture_slots = asyncio.Semaphore(PICTURE_FETCH_CONCURRENCY)
        self.pictures: _Lru = _Lru(1024)  # item id -> display JPEG
        self.file_ids: _Lru = _Lru(8192)  # item id -> Telegram file_id of its uploaded picture
        self._fetching: dict[int, asyncio.Future] = {}  # item id -> picture being prepared
        # per-user photo locks, gone once nobody holds or awaits them
        self._user_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._placeholder: bytes | None = None

    # -- wiring --
    def register(self, app: Application) -> None:
        msg = filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("start", self.on_start, filters=msg))
        app.add_handler(CommandHandler("help", self.on_help, filters=msg))
        app.add_handler(CommandHandler("style", self.on_style, filters=msg))
        app.add_handler(CommandHandler("trend", self.on_trend, filters=msg))
        app.add_handler(CommandHandler("trends", self.on_trend, filters=msg))
        app.add_handler(CommandHandler("forget", self.on_forget, filters=msg))
        app.add_handler(CommandHandler("about", self.on_about, filters=msg))
        app.add_handler(MessageHandler(msg & (filters.PHOTO | filters.Document.ALL), self.on_image))
        app.add_handler(MessageHandler(msg & filters.COMMAND, self.on_unknown_command))
        app.add_handler(MessageHandler(msg, self.on_other))
        app.add_handler(CallbackQueryHandler(self.on_feedback, pattern=r"^fb:"))
        app.add_handler(CallbackQueryHandler(self.on_forget_answer, pattern=r"^forget:"))
        app.add_handler(CallbackQueryHandler(self.on_stale_button))
        app.add_error_handler(self.on_error)

    @staticmethod
    def user(update: Update) -> UserRef:
        return UserRef(PLATFORM, str(update.effective_user.id))

    @staticmethod
    async def reply(message: Message, text: str, **kwargs: Any) -> Message:
        """Reply with as many messages as the text needs; returns the last one."""
        parts = split_message(text)
        sent = None
        for n, part in enumerate(parts):
            extra = kwargs if n == len(parts) - 1 else {}
            sent = await message.reply_text(
                part,
                reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
                **extra,
            )
        return sent

    # -- commands --
    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.reply(update.message, WELCOME)

    async def on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.reply(update.message, render.HELP)

    async def on_about(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.reply(update.message, render.about_text(await self.service.about()))

    async def on_style(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        await self._chat_action(context, message.chat_id, ChatAction.TYPING)
        summary = await self.service.style(self.user(update))
        text = render.style_text(summary)
        if summary.collage_jpeg:
            caption = text if tg_len(text) <= CAPTION_MAX else fit(text.split("\n", 1)[0], CAPTION_MAX)
            await message.reply_photo(
                summary.collage_jpeg,
                caption=caption,
                reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
            )
            if caption != text:
                await self.reply(message, text)
        else:
            await self.reply(message, text)

    async def on_trend(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        tag = " ".join(context.args or []).strip()[:64]
        trend = getattr(self.service, "trend", None)
        if trend is None or not tag:
            head = TREND_UNAVAILABLE if trend is None else TREND_USAGE
            known = await self.service.trends()
            await self.reply(message, head + ("\n\n" + render.trends_text(known) if known else ""))
            return
        status = await self.reply(message, TREND_STARTED.format(tag=tag))
        shown = status.text
        last_edit = time.monotonic()

        async def show(progress: TrendProgress, force: bool) -> None:
            nonlocal shown, last_edit
            text = fit(render.trend_progress_text(progress), TEXT_MAX)
            if text == shown or (not force and time.monotonic() - last_edit < 1.5):
                return
            await status.edit_text(text)
            shown, last_edit = text, time.monotonic()

        result = trend(tag, self.user(update))
        if hasattr(result, "__aiter__"):
            progress = None
            async for progress in result:
                await show(progress, force=progress.done)
            if progress is not None and not progress.done:
                await show(progress, force=True)
        else:
            progress = await result
            if isinstance(progress, TrendProgress):
                await show(progress, force=True)

    async def on_forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.reply(update.message, render.FORGET_CONFIRM, reply_markup=forget_keyboard())

    async def on_forget_answer(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query.data == FORGET_YES:
            counts = await self.service.forget(self.user(update))
            text = render.forgotten(counts)
        else:
            text = FORGET_KEPT
        await query.answer()
        if query.message is not None:
            await query.edit_message_text(text)
        else:  # the button's message is too old to edit; say it in a new one
            await context.bot.send_message(query.from_user.id, text)

    async def on_unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        command = (message.text or message.caption or "").split()[0][1:]
        name, _, addressee = command.partition("@")
        if addressee and addressee.lower() != (context.bot.username or "").lower():
            return  # a command for another bot in a group
        await self.reply(message, UNKNOWN_COMMAND.format(name=fit(name, 64)))

    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        # In groups the bot stays quiet about chatter that isn't for it.
        if update.effective_chat.type == ChatType.PRIVATE:
            await self.reply(update.message, render.HINT)

    # -- photos --
    async def on_image(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        wait = self.rate.check(str(update.effective_user.id))
        if wait:
            await self.reply(message, self.rate.message(wait))
            return
        file_id, refusal = self.choose_file(message)
        if refusal:
            await self.reply(message, refusal)
            return
        # One photo at a time per user: several photos sent together (an album) get
        # their answers one after another instead of interleaved in the chat.
        async with self.user_lock(update.effective_user.id):
            started = time.monotonic()
            action = asyncio.create_task(self._chat_action(context, message.chat_id))
            try:
                async with self.photo_slots:
                    data = await self.download(context, file_id)
                    if isinstance(data, str):  # a refusal found while downloading
                        await self.reply(message, data)
                        return
                    try:
                        rec = await self.service.recommend(data, user=self.user(update), k=self.settings.top_k)
                    except (BadImage, ServiceError) as err:
                        await self.reply(message, str(err))
                        return
                    finally:
                        del data
            finally:
                await action
            await self.send_results(context, message, rec)
        log.info("telegram: %d results in %.0f ms", len(rec.items), (time.monotonic() - started) * 1000)

    def user_lock(self, user_id: int) -> asyncio.Lock:
        lock = self._user_locks.get(user_id)
        if lock is None:
            lock = self._user_locks[user_id] = asyncio.Lock()
        return lock

    def choose_file(self, message: Message) -> tuple[str | None, str | None]:
        """(file_id to download, None) or (None, a refusal), from declared sizes only."""
        if message.photo:
            best = pick_photo(message.photo, self.limit_bytes)
            if best is None:
                biggest = max(message.photo, key=lambda p: p.file_size or 0)
                return None, declared_size_problem(biggest.file_size, self.limit_bytes)
            return best.file_id, None
        doc = message.document
        if doc is None:
            return None, NOT_AN_IMAGE
        mime = (doc.mime_type or "").lower()
        if not mime.startswith("image/") or mime in ("image/svg+xml", "image/vnd.djvu"):
            return None, NOT_AN_IMAGE
        problem = declared_size_problem(doc.file_size, self.limit_bytes)
        if problem:
            return None, problem
        return doc.file_id, None

    async def download(self, context: ContextTypes.DEFAULT_TYPE, file_id: str) -> bytes | str:
        """The file's bytes, or a refusal when Telegram's answer shows it's too big."""
        try:
            file = await context.bot.get_file(file_id)
        except BadRequest as err:
            if "too big" in err.message.lower():
                return render.too_large(TELEGRAM_DOWNLOAD_CAP + 1, self.limit_bytes)
            raise
        problem = declared_size_problem(file.file_size, self.limit_bytes)
        if problem:
            return problem
        data = bytes(await file.download_as_bytearray())
        return declared_size_problem(len(data), self.limit_bytes) or data

    @staticmethod
    async def _chat_action(
        context: ContextTypes.DEFAULT_TYPE, chat_id: int, action: str = ChatAction.UPLOAD_PHOTO
    ) -> None:
        try:
            await context.bot.send_chat_action(chat_id, action)
        except TelegramError as err:  # cosmetic: never worth failing a reply for
            log.debug("chat action failed: %s", err)

    # -- results --
    async def send_results(self, context: ContextTypes.DEFAULT_TYPE, message: Message, rec: Recommendation) -> None:
        items = rec.items[:ALBUM_MAX]
        if not items:
            await self.reply(message, NO_RESULTS)
            return
        try:
            sent = await self.send_album(context, message, items, reuse=True)
        except BadRequest as err:
            if not any(s.item.id in self.file_ids for s in items):
                raise
            log.warning("re-uploading pictures after %s", err.message)  # stale file ids
            for s in items:
                self.file_ids.pop(s.item.id, None)
            sent = await self.send_album(context, message, items, reuse=False)
        for s, m in zip(items, sent):
            if m.photo:
                self.file_ids.put(s.item.id, m.photo[-1].file_id)
        await context.bot.send_message(
            message.chat_id, results_text(items), reply_markup=results_keyboard(items)
        )

    async def send_album(
        self, context: ContextTypes.DEFAULT_TYPE, message: Message, items: Sequence[ScoredItem], *, reuse: bool
    ) -> Sequence[Message]:
        pictures = await self.pictures_for(items, reuse=reuse)
        captions = [fit(render.caption(s), CAPTION_MAX) for s in items]
        reply_to = ReplyParameters(message.message_id, allow_sending_without_reply=True)
        if len(items) < ALBUM_MIN:  # an album needs at least two pictures
            return [
                await context.bot.send_photo(
                    message.chat_id, pictures[0], caption=captions[0], reply_parameters=reply_to
                )
            ]
        media = [InputMediaPhoto(p, caption=c) for p, c in zip(pictures, captions)]
        return await context.bot.send_media_group(message.chat_id, media, reply_parameters=reply_to)

    async def pictures_for(self, items: Iterable[ScoredItem], *, reuse: bool) -> list[str | bytes]:
        """Per item: a file_id Telegram already has, else display JPEG bytes to upload."""
        async def one(item_id: int) -> str | bytes:
            known = self.file_ids.get(item_id) if reuse else None
            return known or self.pictures.get(item_id) or await self.picture(item_id)

        return list(await asyncio.gather(*(one(s.item.id) for s in items)))

    async def picture(self, item_id: int) -> bytes:
        """An item's display JPEG (the placeholder when it has no usable picture); one
        database read and conversion per item even when many users want it at once."""
        pending = self._fetching.get(item_id)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except Exception:  # noqa: BLE001 - the first asker was cancelled: fetch it ourselves
                return await self.picture(item_id)
        future = asyncio.get_running_loop().create_future()
        self._fetching[item_id] = future
        try:
            jpeg = None
            try:
                async with self.picture_slots:
                    raw = await self.service.item_image(item_id)
                jpeg = await asyncio.to_thread(display_jpeg, raw) if raw else None
            except (ServiceError, BadImage):
                pass
            except Exception as err:  # noqa: BLE001 - one picture never sinks a reply
                log.warning("item %d: picture unavailable: %r", item_id, err)
            if jpeg is not None:
                self.pictures.put(item_id, jpeg)
            result = jpeg or self.placeholder
            future.set_result(result)
            return result
        except BaseException:  # cancelled: waiters fetch it themselves
            if not future.done():
                future.set_exception(RuntimeError("picture fetch cancelled"))
                future.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            self._fetching.pop(item_id, None)

    @property
    def placeholder(self) -> bytes:
        if self._placeholder is None:
            self._placeholder = placeholder_jpeg()
        return self._placeholder

    # -- buttons --
    async def on_feedback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        parsed = parse_feedback(query.data)
        if parsed is None:
            await query.answer(BUTTON_EXPIRED)
            return
        value, item_id = parsed
        try:
            await self.service.feedback(self.user(update), item_id, value)
        except ServiceError as err:
            await query.answer(fit(str(err), CALLBACK_ANSWER_MAX), show_alert=True)
            return
        await query.answer(fit(render.FEEDBACK_THANKS[value], CALLBACK_ANSWER_MAX))

    async def on_stale_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.callback_query.answer(BUTTON_EXPIRED)

    # -- errors --
    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log, tell that one user something went wrong, never raise."""
        err = context.error
        if isinstance(err, Forbidden):  # the user blocked the bot: nobody to tell
            log.info("telegram: can't reach a user: %s", err)
            return
        who = ""
        if isinstance(update, Update):
            who = f" (update {update.update_id}, user {getattr(update.effective_user, 'id', '?')})"
        log.error("telegram handler failed%s", who, exc_info=err)
        if not isinstance(update, Update):
            return
        with contextlib.suppress(TelegramError):
            if update.callback_query is not None:
                await update.callback_query.answer(fit(render.INTERNAL_ERROR, CALLBACK_ANSWER_MAX), show_alert=True)
            elif update.effective_chat is not None:
                reply_to = None
                if update.effective_message is not None:
                    reply_to = ReplyParameters(update.effective_message.message_id, allow_sending_without_reply=True)
                await context.bot.send_message(update.effective_chat.id, render.INTERNAL_ERROR, reply_parameters=reply_to)


# ---- building and running --------------------------------------------------------------
def _token(settings: Settings) -> str:
    secret = settings.telegram_bot_token
    token = secret.get_secret_value().strip() if secret is not None else ""
    if not token:
        raise MissingToken()
    return token


def build_application(
    service: Any,
    settings: Settings,
    *,
    base_url: str | None = None,
    base_file_url: str | None = None,
    concurrency: int = 64,
    max_messages_per_second: float = 30,
    max_retries: int = 3,
) -> Application:
    """The PTB Application with every handler registered (not started).

    ``base_url`` / ``base_file_url`` default to the settings
    (``FASHIONBOT_TELEGRAM_BASE_URL`` / ``..._BASE_FILE_URL``), then to Telegram's;
    they follow PTB's convention: the token is appended, or replaces ``{token}``.
    ``concurrency`` updates are processed at once; outgoing requests are limited to
    ``max_messages_per_second`` (Telegram's broadcast limit; 0 turns it off) and a
    ``RetryAfter`` is waited out up to ``max_retries`` times.
    """
    token = _token(settings)
    _redact_from_logs(token)
    base_url = base_url or settings.telegram_base_url
    base_file_url = base_file_url or settings.telegram_base_file_url
    builder = (
        ApplicationBuilder()
        .token(token)
        .rate_limiter(AIORateLimiter(overall_max_rate=max_messages_per_second, max_retries=max_retries))
        .concurrent_updates(concurrency)
        .read_timeout(20)
        .write_timeout(20)
        .media_write_timeout(60)
        .pool_timeout(10)
        .job_queue(None)
    )
    if base_url:
        builder = builder.base_url(base_url)
    if base_file_url:
        builder = builder.base_file_url(base_file_url)
    app = builder.build()
    frontend = TelegramFrontend(service, settings)
    frontend.register(app)
    app.bot_data["fashionbot"] = frontend
    return app


async def run_telegram(
    service: Any,
    settings: Settings,
    *,
    webhook_url: str | None = None,
    listen: str = "127.0.0.1",
    port: int = 8443,
    base_url: str | None = None,
    base_file_url: str | None = None,
    max_messages_per_second: float = 30,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve Telegram until cancelled: long polling, or a webhook when ``webhook_url``
    (the public https URL Telegram posts to) is given; the local server listens on
    ``listen:port`` at the same path, behind the TLS proxy that URL points at.

    Raises `MissingToken`, or `telegram.error.InvalidToken` when Telegram rejects the
    token (`main_line_error` turns both into one line). Sets ``ready`` once serving.
    """
    app = build_application(
        service, settings, base_url=base_url, base_file_url=base_file_url,
        max_messages_per_second=max_messages_per_second,
    )
    async with app:  # initialize (getMe: checks the token) ... shutdown
        try:
            await app.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
        except TelegramError as err:
            log.warning("telegram: couldn't set the command menu: %s", err)
        await app.start()
        try:
            if webhook_url:
                path = urlsplit(webhook_url).path.strip("/")
                await app.updater.start_webhook(
                    listen=listen,
                    port=port,
                    url_path=path,
                    webhook_url=webhook_url,
                    allowed_updates=ALLOWED_UPDATES,
                    secret_token=secrets.token_urlsafe(32),
                )
                log.info("telegram: webhook on %s:%d/%s for %s", listen, port, path, webhook_url)
            else:
                await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES, timeout=30)
                log.info("telegram: polling as @%s", app.bot.username)
            freeze_startup_heap()
            if ready is not None:
                ready.set()
            await asyncio.Event().wait()  # until cancelled
        finally:
            with contextlib.suppress(RuntimeError):
                if app.updater.running:
                    await app.updater.stop()
            if app.running:
                await app.stop()


def freeze_startup_heap() -> None:
    """Move everything alive after startup (model, catalogue, libraries: ~300k objects)
    out of the garbage collector's sight. Otherwise every full collection walks them
    all, holding the GIL for 100-250 ms, on the loop thread or any other: measured as
    the longest event-loop stalls under load. Idempotent; belongs to process startup,
    done here too so the bot is well-behaved however it was started."""
    gc.collect()
    gc.freeze()


def main_line_error(err: BaseException) -> str | None:
    """One clear line for a startup error the operator can fix, else None."""
    if isinstance(err, MissingToken):
        return str(err)
    if isinstance(err, InvalidToken):
        return "Telegram rejected the bot token (TELEGRAM_BOT_TOKEN): check it with @BotFather."
    if isinstance(err, NetworkError):
        return f"Can't reach the Telegram Bot API: {err.message}"
    if isinstance(err, TelegramError):  # e.g. setWebhook refused: "bad webhook: HTTPS url must be provided"
        return f"Telegram refused to start the bot: {err.message}"
    if isinstance(err, OSError) and err.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
        return f"Can't listen for the Telegram webhook: {err.strerror or err}"
    return None


# ---- keeping the token out of logs ---------------------------------------------------------
_SECRETS: set[str] = set()


def _redact_from_logs(token: str) -> None:
    """httpx logs every request URL, and Bot API URLs contain the token: keep httpx
    quiet and rewrite any log record that still contains it."""
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
    if not _SECRETS:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                text = record.getMessage()
            except Exception:  # noqa: BLE001 - a malformed record is logging's problem
                return record
            if any(s in text for s in _SECRETS):
                for s in _SECRETS:
                    text = text.replace(s, "<token>")
                record.msg, record.args = text, None
            return record

        logging.setLogRecordFactory(factory)
    _SECRETS.add(token)
