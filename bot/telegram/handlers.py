"""What the Telegram bot does with each update: receive (PTB handlers), hand the work
to the shared flows (:mod:`bot.flows`), render and send the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import weakref
from collections.abc import Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Message, ReplyParameters, Update
from telegram.constants import ChatAction, ChatType, MessageEntityType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from bot import render
from bot.flows import PhotoFlow, PhotoRequest, Refusal, TrendUnavailable, error_text, trend_updates, user_tag
from bot.guards import TELEGRAM_DOWNLOAD_CAP, declared_size_problem
from bot.telegram.keyboards import (
    forget_keyboard,
    parse_feedback,
    parse_forget,
    parse_switch,
    results_keyboard,
    results_text,
    whole_photo_keyboard,
)
from bot.telegram.media import AlbumPictures, pick_photo
from bot.telegram.text import CALLBACK_ANSWER_MAX, CAPTION_MAX, TEXT_MAX, fit, split_message, tg_len
from bot.urls import is_public_url, telegram_item_link
from engine.api import FashionAPI
from engine.config import Settings
from engine.errors import ServiceError
from engine.types import Item, Recommendation, ScoredItem, UserRef

log = logging.getLogger(__name__)

PLATFORM = "telegram"
ALBUM_MIN, ALBUM_MAX = 2, 10
PHOTO_CONCURRENCY = 32  # photos downloaded + recommended at once (one embedder batch; more wait)
CHAT_ACTION_EVERY = 4.0  # s: Telegram shows a chat action for 5 s, so renew it before it fades
# Renewals are cosmetic and share the flood limit (30 requests/s) with the answers: under a
# burst of users they would slow every answer down, so all chats together renew at most
# this many times a second (the first action of each photo is always sent).
CHAT_ACTION_RENEWALS_PER_S = 2.0
DEEP_LINK_RE = re.compile(r"item_(\d{1,12})")
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
    "That file isn't a picture I can use. Please send a photo (JPEG, PNG, WebP, GIF or BMP), as a photo or as a file."
)
TREND_STARTED = "Trend “{tag}”: searching shops…"
FORGET_KEPT = "OK, I've kept everything."
BUTTON_EXPIRED = "That button no longer works. Send me a new photo."
# What an empty chat with the bot shows (setMyDescription: ≤ 512 characters) and its
# profile / share text (setMyShortDescription: ≤ 120).
DESCRIPTION = (
    "Send me a photo of an outfit or a piece of clothing and I'll find the most similar items in the "
    "catalogue, with their prices and shop links. /style shows your personal style, /trend searches shops "
    "for something new.\n\nI don't keep your photos: only what I need to answer (a few numbers per photo), "
    "and /forget deletes all of it."
)
SHORT_DESCRIPTION = "Send a photo of an outfit, get similar fashion items. I keep no photos."
ITEM_LINK = "Open in the shop ↗"


def deep_link(bot_username: str, item_id: int) -> str:
    """The t.me link that opens ``item_id`` in a chat with the bot (``/start item_<id>``)."""
    link = telegram_item_link(bot_username, item_id)
    if link is None:
        raise ValueError("a deep link needs the bot's username")
    return link


def item_caption(item: Item) -> str:
    where = " · ".join(x for x in (item.brand, item.shop) if x)
    return "\n".join(x for x in (item.title, item.price_text, where) if x)


Context = ContextTypes.DEFAULT_TYPE


def _reply_to(message_id: int | None) -> ReplyParameters | None:
    return None if message_id is None else ReplyParameters(message_id, allow_sending_without_reply=True)


class TelegramFrontend:
    """Handlers for one Application; holds the flows, the per-user locks and caches."""

    def __init__(self, service: FashionAPI, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.limit_bytes = min(settings.max_image_bytes, TELEGRAM_DOWNLOAD_CAP)
        self.flow = PhotoFlow(service, settings, limit_bytes=self.limit_bytes)
        # Photos being downloaded or embedded at once: bounds memory (each may be up
        # to limit_bytes) and the database sessions a burst opens, while still giving
        # the embedder a decent micro-batch.
        self.photo_slots = asyncio.Semaphore(PHOTO_CONCURRENCY)
        self.album = AlbumPictures(service)
        self._renewals: list[float] = []  # when recent chat-action renewals were sent
        # per-user photo locks, gone once nobody holds or awaits them
        self._user_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- wiring --
    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
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
        app.add_handler(CallbackQueryHandler(self.on_switch, pattern=r"^g:"))
        app.add_handler(CallbackQueryHandler(self.on_forget_answer, pattern=r"^forget:"))
        app.add_handler(CallbackQueryHandler(self.on_stale_button))
        app.add_error_handler(self.on_error)

    @staticmethod
    def user(update: Update) -> UserRef:
        if update.effective_user is None:
            raise ValueError("an update without a user")
        return UserRef(PLATFORM, str(update.effective_user.id))

    @staticmethod
    def message(update: Update) -> Message:
        if update.message is None:
            raise ValueError("an update without a message")
        return update.message

    @staticmethod
    async def reply(message: Message, text: str, **kwargs: Any) -> Message:
        """Reply with as many messages as the text needs; returns the last one."""
        parts = split_message(text)
        sent: Message | None = None
        for n, part in enumerate(parts):
            extra = kwargs if n == len(parts) - 1 else {}
            sent = await message.reply_text(part, reply_parameters=_reply_to(message.message_id), **extra)
        assert sent is not None  # split_message returns at least one part
        return sent

    # -- commands --
    async def on_start(self, update: Update, context: Context) -> None:
        """``/start``, or ``/start item_<id>`` from a deep link (``t.me/<bot>?start=item_<id>``)."""
        message = self.message(update)
        payload = (context.args or [""])[0]
        match = DEEP_LINK_RE.fullmatch(payload)
        if match is None:
            await self.reply(message, WELCOME)
            return
        await self.send_item(context, message, int(match.group(1)))

    async def send_item(self, context: Context, message: Message, item_id: int) -> None:
        """One catalogue item: its picture, a caption and its shop link (public links only)."""
        try:
            item = await self.service.item(item_id)
        except ServiceError as err:  # unknown or removed item: its own friendly words
            await self.reply(message, str(err))
            return
        await self._chat_action(context, message.chat_id)
        picture = await self.album.picture(item.id)
        markup = (
            InlineKeyboardMarkup([[InlineKeyboardButton(ITEM_LINK, url=item.url)]])
            if item.url is not None and is_public_url(item.url)
            else None
        )
        await message.reply_photo(
            picture,
            caption=fit(item_caption(item), CAPTION_MAX),
            reply_markup=markup,
            reply_parameters=_reply_to(message.message_id),
        )

    async def on_help(self, update: Update, context: Context) -> None:
        await self.reply(self.message(update), render.HELP)

    async def on_about(self, update: Update, context: Context) -> None:
        await self.reply(self.message(update), render.about_text(await self.service.about()))

    async def on_style(self, update: Update, context: Context) -> None:
        message = self.message(update)
        refusal = self.flow.command_refusal(self.user(update))
        if refusal:
            await self.reply(message, refusal)
            return
        await self._chat_action(context, message.chat_id, ChatAction.TYPING)
        summary = await self.service.style(self.user(update))
        text = render.style_text(summary)
        if summary.collage_jpeg:
            caption = text if tg_len(text) <= CAPTION_MAX else fit(text.split("\n", 1)[0], CAPTION_MAX)
            await message.reply_photo(
                summary.collage_jpeg, caption=caption, reply_parameters=_reply_to(message.message_id)
            )
            if caption != text:
                await self.reply(message, text)
        else:
            await self.reply(message, text)

    async def _known_trends(self, head: str) -> str:
        known = await self.service.trends()
        return head + ("\n\n" + render.trends_text(known) if known else "")

    async def on_trend(self, update: Update, context: Context) -> None:
        message = self.message(update)
        tag = " ".join(context.args or []).strip()[:64]
        if not tag:
            await self.reply(message, await self._known_trends(render.TREND_USAGE))
            return
        refusal = self.flow.command_refusal(self.user(update))
        if refusal:
            await self.reply(message, refusal)
            return
        status = await self.reply(message, TREND_STARTED.format(tag=tag))
        shown = status.text
        try:
            async for progress in trend_updates(self.service, tag, self.user(update)):
                text = fit(render.trend_progress_text(progress), TEXT_MAX)
                if text != shown:
                    await status.edit_text(text)
                    shown = text
        except TrendUnavailable:
            await status.edit_text(fit(await self._known_trends(render.TREND_UNAVAILABLE), TEXT_MAX))

    async def on_forget(self, update: Update, context: Context) -> None:
        user = update.effective_user
        if user is None:
            return
        await self.reply(self.message(update), render.FORGET_CONFIRM, reply_markup=forget_keyboard(user.id))

    async def on_forget_answer(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None:
            return
        parsed = parse_forget(query.data)
        if parsed is None:
            await query.answer(BUTTON_EXPIRED)
            return
        yes, owner = parsed
        if query.from_user.id != owner:  # someone else's prompt (in a group): touch nothing
            await query.answer(render.NOT_YOURS, show_alert=True)
            return
        if yes:
            counts = await self.service.forget(self.user(update))
            text = render.forgotten(counts)
        else:
            text = FORGET_KEPT
        await query.answer()
        if query.message is not None:
            await query.edit_message_text(text)
        else:  # the button's message is too old to edit; say it in a new one
            await context.bot.send_message(query.from_user.id, text)

    async def on_unknown_command(self, update: Update, context: Context) -> None:
        message = self.message(update)
        command = (message.text or message.caption or "").split()[0][1:]
        name, _, addressee = command.partition("@")
        if addressee and addressee.lower() != (context.bot.username or "").lower():
            return  # a command for another bot in a group
        await self.reply(message, UNKNOWN_COMMAND.format(name=fit(name, 64)))

    async def on_other(self, update: Update, context: Context) -> None:
        # In groups the bot stays quiet about chatter that isn't for it.
        if update.effective_chat is not None and update.effective_chat.type == ChatType.PRIVATE:
            await self.reply(self.message(update), render.HINT)

    @staticmethod
    def addressed(message: Message, bot_username: str | None, bot_id: int | None = None) -> bool:
        """Whether a message is for the bot: in a private chat always; in a group only
        when it mentions the bot (``@name`` in its text or caption) or replies to it."""
        if message.chat.type == ChatType.PRIVATE:
            return True
        reply = message.reply_to_message
        if reply is not None and reply.from_user is not None and bot_id is not None and reply.from_user.id == bot_id:
            return True
        if not bot_username:
            return False
        name = "@" + bot_username.lower()
        for entity, text in [*message.parse_entities().items(), *message.parse_caption_entities().items()]:
            if entity.type == MessageEntityType.MENTION and text.lower() == name:
                return True
            if entity.type == MessageEntityType.BOT_COMMAND and text.lower().endswith(name):
                return True
        return False

    # -- photos --
    async def on_image(self, update: Update, context: Context) -> None:
        message = self.message(update)
        if not self.addressed(message, context.bot.username, context.bot.id):
            return  # a picture or file shared in a group, not for the bot
        user = self.user(update)
        file_id, declared, refusal = self.choose_file(message)

        async def download() -> bytes | Refusal:
            assert file_id is not None
            return await self.download(context, file_id)

        request = PhotoRequest(user=user, declared_size=declared, download=download, refusal=refusal)
        # One photo at a time per user: several photos sent together (an album) get
        # their answers one after another instead of interleaved in the chat.
        async with self.user_lock(user.user_id):
            started = time.monotonic()
            done = asyncio.Event()
            if file_id is None or refusal is not None:  # refused before any download: no "sending photo…"
                done.set()
            action = asyncio.create_task(self._keep_chat_action(context, message.chat_id, done))
            try:
                result = await self.flow.photo(request, slot=self.photo_slots)
            finally:
                done.set()
                await action
            if isinstance(result, Refusal):
                await self.reply(message, result.text)
                return
            await self.send_results(context, message.chat_id, message.message_id, result)
        log.info("telegram: %d results in %.0f ms", len(result.items), (time.monotonic() - started) * 1000)

    def user_lock(self, user_id: str) -> asyncio.Lock:
        key = int(user_id)
        lock = self._user_locks.get(key)
        if lock is None:
            lock = self._user_locks[key] = asyncio.Lock()
        return lock

    def choose_file(self, message: Message) -> tuple[str | None, int | None, str | None]:
        """(file_id to download, its declared size, a refusal), from what Telegram declares."""
        if message.photo:
            best = pick_photo(message.photo, self.limit_bytes)
            if best is None:
                biggest = max(message.photo, key=lambda p: p.file_size or 0)
                return None, biggest.file_size, None
            return best.file_id, best.file_size, None
        doc = message.document
        if doc is None:
            return None, None, NOT_AN_IMAGE
        mime = (doc.mime_type or "").lower()
        if not mime.startswith("image/") or mime in ("image/svg+xml", "image/vnd.djvu"):
            return None, None, NOT_AN_IMAGE
        return doc.file_id, doc.file_size, None

    async def download(self, context: Context, file_id: str) -> bytes | Refusal:
        """The file's bytes, or a refusal when Telegram's answer shows it's too big."""
        try:
            file = await context.bot.get_file(file_id)
        except BadRequest as err:
            if "too big" in err.message.lower():
                return Refusal(render.too_large(TELEGRAM_DOWNLOAD_CAP + 1, self.limit_bytes), "too_large")
            raise
        problem = declared_size_problem(file.file_size, self.limit_bytes)
        if problem:
            return Refusal(problem, "too_large")
        return bytes(await file.download_as_bytearray())

    async def _keep_chat_action(self, context: Context, chat_id: int, done: asyncio.Event) -> None:
        """ "Sending photo…" from the start until ``done``: Telegram clears a chat action
        after 5 s (or when the bot sends a message), so it is renewed every
        CHAT_ACTION_EVERY seconds while a slow answer is being prepared. A request in
        flight is never cancelled, so the answer can't overtake it."""
        first = True
        while not done.is_set():
            if first or self._renewal_allowed():
                await self._chat_action(context, chat_id)
            first = False
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: a cancel is never lost (3.11's wait_for can)
                async with asyncio.timeout(CHAT_ACTION_EVERY):
                    await done.wait()

    def _renewal_allowed(self) -> bool:
        """At most CHAT_ACTION_RENEWALS_PER_S renewals a second, over all chats."""
        now = time.monotonic()
        self._renewals = [t for t in self._renewals if now - t < 1.0]
        if len(self._renewals) >= CHAT_ACTION_RENEWALS_PER_S:
            return False
        self._renewals.append(now)
        return True

    @staticmethod
    async def _chat_action(context: Context, chat_id: int, action: str = ChatAction.UPLOAD_PHOTO) -> None:
        try:
            await context.bot.send_chat_action(chat_id, action)
        except TelegramError as err:  # cosmetic: never worth failing a reply for
            log.debug("chat action failed: %s", err)

    # -- results --
    async def send_results(self, context: Context, chat_id: int, reply_to: int | None, rec: Recommendation) -> None:
        """A photo's answer: the garments named first (when several were found), the
        album of the shown garment, then its buttons (rate, open, switch garment); a
        photo without clothing gets the refusal with a whole-photo button."""
        if rec.no_garment:
            markup = whole_photo_keyboard(rec.request_id) if rec.request_id is not None else None
            await context.bot.send_message(
                chat_id, render.no_garment_text(), reply_parameters=_reply_to(reply_to), reply_markup=markup
            )
            return
        items = rec.items[:ALBUM_MAX]
        intro = render.recommendation_intro(rec)
        if intro:
            await context.bot.send_message(chat_id, fit(intro, TEXT_MAX), reply_parameters=_reply_to(reply_to))
        if not items:
            await context.bot.send_message(
                chat_id,
                render.NO_RESULTS,
                reply_parameters=_reply_to(reply_to),
                reply_markup=results_keyboard([], rec) if rec.garments else None,
            )
            return
        try:
            sent = await self.send_album(context, chat_id, reply_to, items, reuse=True)
        except BadRequest as err:
            if not self.album.forget_file_ids(items):
                raise
            log.warning("re-uploading pictures after %s", err.message)  # stale file ids
            sent = await self.send_album(context, chat_id, reply_to, items, reuse=False)
        for s, m in zip(items, sent):
            if m.photo:
                self.album.file_ids.put(s.item.id, m.photo[-1].file_id)
        await context.bot.send_message(chat_id, results_text(items, rec), reply_markup=results_keyboard(items, rec))

    async def send_album(
        self, context: Context, chat_id: int, reply_to: int | None, items: Sequence[ScoredItem], *, reuse: bool
    ) -> Sequence[Message]:
        pictures = await self.album.for_items(items, reuse=reuse)
        captions = [fit(render.caption(s), CAPTION_MAX) for s in items]
        if len(items) < ALBUM_MIN:  # an album needs at least two pictures
            photo = await context.bot.send_photo(
                chat_id, pictures[0], caption=captions[0], reply_parameters=_reply_to(reply_to)
            )
            return [photo]
        media = [InputMediaPhoto(p, caption=c) for p, c in zip(pictures, captions)]
        return await context.bot.send_media_group(chat_id, media, reply_parameters=_reply_to(reply_to))

    # -- buttons --
    async def on_feedback(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None:
            return
        parsed = parse_feedback(query.data)
        if parsed is None:
            await query.answer(BUTTON_EXPIRED)
            return
        value, item_id = parsed
        try:
            await self.service.feedback(self.user(update), item_id, value)
        except Exception as err:
            await query.answer(
                fit(error_text(err, what="feedback", user=self.user(update)), CALLBACK_ANSWER_MAX), show_alert=True
            )
            return
        await query.answer(fit(render.FEEDBACK_THANKS[value], CALLBACK_ANSWER_MAX))

    async def on_switch(self, update: Update, context: Context) -> None:
        """Another garment of a photo (or the whole photo): a new album for the presser,
        when the photo was theirs; a friendly alert otherwise."""
        query = update.callback_query
        if query is None or update.effective_chat is None:
            return
        parsed = parse_switch(query.data)
        if parsed is None:
            await query.answer(BUTTON_EXPIRED)
            return
        request_id, garment = parsed
        user = self.user(update)
        async with self.user_lock(user.user_id):
            result = await self.flow.switch(user, request_id, garment)
            if isinstance(result, str):
                await query.answer(fit(result, CALLBACK_ANSWER_MAX), show_alert=True)
                return
            await query.answer()
            reply_to = query.message.message_id if query.message is not None else None
            await self.send_results(context, update.effective_chat.id, reply_to, result)

    async def on_stale_button(self, update: Update, context: Context) -> None:
        if update.callback_query is not None:
            await update.callback_query.answer(BUTTON_EXPIRED)

    # -- errors --
    async def on_error(self, update: object, context: Context) -> None:
        """Log (the user id hashed), tell that one user something went wrong, never raise."""
        err = context.error
        if isinstance(err, Forbidden):  # the user blocked the bot: nobody to tell
            log.info("telegram: can't reach a user: %s", err)
            return
        who = ""
        if isinstance(update, Update):
            user = update.effective_user
            tag = user_tag(UserRef(PLATFORM, str(user.id))) if user is not None else "?"
            who = f" (update {update.update_id}, user {tag})"
        log.error("telegram handler failed%s", who, exc_info=err)
        if not isinstance(update, Update):
            return
        with contextlib.suppress(TelegramError):
            if update.callback_query is not None:
                await update.callback_query.answer(fit(render.INTERNAL_ERROR, CALLBACK_ANSWER_MAX), show_alert=True)
            elif update.effective_chat is not None:
                message = update.effective_message
                await context.bot.send_message(
                    update.effective_chat.id,
                    render.INTERNAL_ERROR,
                    reply_parameters=_reply_to(message.message_id if message is not None else None),
                )
