"""The Bot API methods the fake answers (``_m_<method>``), each checked like Telegram checks
it, mixed into :class:`FakeBotAPI`.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import urlsplit

from tests.support.fakes.telegram_rules import (
    CHAT_ACTIONS,
    DOWNLOAD_CAP,
    ApiError,
    tg_len,
)


class BotMethods:
    """getMe, getUpdates, sendMessage, sendMediaGroup … (mixed into the fake server)."""

    async def _m_getMe(self, params, files):
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "FashionBot",
            "username": self.bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_deleteWebhook(self, params, files):
        self.webhook = None
        return True

    async def _m_setWebhook(self, params, files):
        url = params.get("url", "")
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise ApiError(400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
        if (parts.port or 443) not in (443, 80, 88, 8443):
            raise ApiError(400, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = dict(params)
        return True

    async def _m_getWebhookInfo(self, params, files):
        return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}

    async def _m_setMyCommands(self, params, files):
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be a list of at most 100")
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands = commands
        return True

    async def _m_setMyDescription(self, params, files):
        text = params.get("description", "")
        if not isinstance(text, str) or len(text) > 512:
            raise ApiError(400, "Bad Request: BOT_DESCRIPTION_INVALID")
        self.description = text
        return True

    async def _m_setMyShortDescription(self, params, files):
        text = params.get("short_description", "")
        if not isinstance(text, str) or len(text) > 120:
            raise ApiError(400, "Bad Request: BOT_SHORT_DESCRIPTION_INVALID")
        self.short_description = text
        return True

    async def _m_getUpdates(self, params, files):
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                pending = self._updates[:limit]
            if pending:
                return pending
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                return []
            self._new_update.clear()
            with self._lock:
                if any(u["update_id"] >= offset for u in self._updates):
                    continue
            try:
                await asyncio.wait_for(self._new_update.wait(), remaining)
            except TimeoutError:
                return []

    async def _m_sendChatAction(self, params, files):
        self._chat_id(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _m_sendMessage(self, params, files):
        chat_id = self._chat_id(params)
        self._check_text(params.get("text"), 4096, "message text")
        self._check_markup(params.get("reply_markup"))
        reply_to = self._check_reply(chat_id, params)
        return self._bot_message(
            chat_id,
            text=params["text"],
            reply_markup=params.get("reply_markup"),
            reply_to_message=self._messages.get((chat_id, reply_to)) if reply_to else None,
        )

    async def _m_sendPhoto(self, params, files):
        chat_id = self._chat_id(params)
        caption = params.get("caption")
        if caption is not None and tg_len(caption) > 1024:
            raise ApiError(400, "Bad Request: message caption is too long")
        self._check_markup(params.get("reply_markup"))
        self._check_reply(chat_id, params)
        photo = params.get("photo")
        if photo is None and "photo" in files:
            sizes = self._photo_sizes(files["photo"])
        else:
            sizes = self._resolve_photo(photo, files, "photo")
        return self._bot_message(chat_id, photo=sizes, caption=caption, reply_markup=params.get("reply_markup"))

    async def _m_sendMediaGroup(self, params, files):
        chat_id = self._chat_id(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise ApiError(400, "Bad Request: media must include 2-10 items")
        self._check_reply(chat_id, params)
        kinds = {m.get("type") for m in media}
        if not kinds <= {"photo", "video"}:
            raise ApiError(400, "Bad Request: can't mix these media types in an album")
        resolved = []
        for n, m in enumerate(media):
            caption = m.get("caption")
            if caption is not None and tg_len(caption) > 1024:
                raise ApiError(400, f"Bad Request: media #{n}: caption is too long")
            resolved.append((self._resolve_photo(m.get("media"), files, f"media #{n}"), caption))
        group_id = str(next(self._file_ids) * 7919)
        return [
            self._bot_message(chat_id, photo=sizes, caption=caption, media_group_id=group_id)
            for sizes, caption in resolved
        ]

    async def _m_editMessageText(self, params, files):
        chat_id = self._chat_id(params)
        message_id = int(params.get("message_id") or 0)
        self._check_text(params.get("text"), 4096, "message text")
        self._check_markup(params.get("reply_markup"))
        with self._lock:
            msg = self._messages.get((chat_id, message_id))
            if msg is None or msg["from"].get("id") != self.bot_id:
                raise ApiError(400, "Bad Request: message to edit not found")
            if "text" not in msg:
                raise ApiError(400, "Bad Request: there is no text in the message to edit")
            if msg["text"] == params["text"] and msg.get("reply_markup") == params.get("reply_markup"):
                raise ApiError(400, "Bad Request: message is not modified")
            msg["text"] = params["text"]
            if params.get("reply_markup") is not None:
                msg["reply_markup"] = params["reply_markup"]
            else:
                msg.pop("reply_markup", None)
            msg["edit_date"] = int(time.time())
            return dict(msg)

    async def _m_answerCallbackQuery(self, params, files):
        query_id = str(params.get("callback_query_id"))
        with self._lock:
            if self._open_queries.pop(query_id, None) is None:
                raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if text is not None and tg_len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    async def _m_getFile(self, params, files):
        stored = self._files.get(str(params.get("file_id")))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if len(stored.data) > DOWNLOAD_CAP or (stored.declared_size or 0) > DOWNLOAD_CAP:
            raise ApiError(400, "Bad Request: file is too big", violation=False)
        result = {"file_id": stored.file_id, "file_unique_id": stored.unique_id, "file_path": stored.path}
        if stored.declared_size is not None:
            result["file_size"] = stored.declared_size
        return result
