"""Building the updates a test pushes to the bot as if users sent them (photos, documents,
texts, stickers, callback queries), mixed into :class:`FakeBotAPI`.
"""

from __future__ import annotations

import io
import re
import time
from typing import Any

from PIL import Image

from tests.support.fakes.telegram_rules import (
    StoredFile,
    tg_len,
)


class UpdateBuilder:
    """Users, chats and the updates they send (mixed into the fake server)."""

    # ---- test helpers: updates -------------------------------------------------------------
    def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; returns its update_id."""
        with self._lock:
            update_id = next(self._update_ids)
            update = {"update_id": update_id, **update}
            self._updates.append(update)
            self.pushed_at[update_id] = time.monotonic()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._new_update.set)
        return update_id

    def user(self, user_id: int, first_name: str = "Test") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"{first_name}{user_id}", "language_code": "en"}

    def chat(self, user_id: int) -> dict[str, Any]:
        chat = {"id": user_id, "type": "private", "first_name": f"Test{user_id}"}
        with self._lock:
            self._chats[user_id] = chat
        return chat

    def group(self, chat_id: int, title: str = "Outfits") -> dict[str, Any]:
        """A group chat (negative id, as Telegram's are); pass it as ``chat=`` to make_*_update."""
        chat = {"id": -abs(chat_id), "type": "supergroup", "title": title}
        with self._lock:
            self._chats[chat["id"]] = chat
        return chat

    def _message(self, user_id: int, *, chat: dict[str, Any] | None = None, **content: Any) -> dict[str, Any]:
        chat = chat or self.chat(user_id)
        msg = {
            "message_id": self._next_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": chat,
            "from": self.user(user_id),
            **content,
        }
        with self._lock:
            self._messages[(chat["id"], msg["message_id"])] = msg
        return msg

    def add_file(
        self, data: bytes, *, declared_size: int | None = -1, suffix: str = "jpg", kind: str = "photos"
    ) -> StoredFile:
        """Store a file the bot may fetch with getFile; ``declared_size`` -1 = the real size,
        None = not declared."""
        n = next(self._file_ids)
        stored = StoredFile(
            file_id=f"AgAC-fake-{n}-{'x' * 20}",
            unique_id=f"AQAD{n}",
            data=data,
            declared_size=len(data) if declared_size == -1 else declared_size,
            path=f"{kind}/file_{n}.{suffix}",
        )
        with self._lock:
            self._files[stored.file_id] = stored
            self._files_by_path[stored.path] = stored
        return stored

    def make_photo_update(
        self,
        user_id: int,
        jpeg: bytes,
        *,
        caption: str | None = None,
        declared_size: int | None = -1,
        chat: dict[str, Any] | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A compressed photo as Telegram delivers it: a thumbnail and the full size.

        Bytes that don't decode (hostile-input tests: what a modified client could
        upload) are delivered as the one "full size" version, 1280x1280 declared."""
        sizes: list[dict[str, Any]] = []
        try:
            with Image.open(io.BytesIO(jpeg)) as img:
                w, h = img.size
                thumb = img.convert("RGB")
                thumb.thumbnail((90, 90))
            buf = io.BytesIO()
            thumb.save(buf, format="JPEG", quality=70)
            small = self.add_file(buf.getvalue())
            sizes.append(
                {
                    "file_id": small.file_id,
                    "file_unique_id": small.unique_id,
                    "width": thumb.width,
                    "height": thumb.height,
                    "file_size": small.declared_size,
                }
            )
        except Exception:
            w = h = 1280
        full = self.add_file(jpeg, declared_size=declared_size)
        sizes.append(
            {
                "file_id": full.file_id,
                "file_unique_id": full.unique_id,
                "width": w,
                "height": h,
                **({"file_size": full.declared_size} if full.declared_size is not None else {}),
            }
        )
        content: dict[str, Any] = {"photo": sizes}
        if caption:
            content["caption"] = caption
            content.update(self._mention_entities(caption, "caption_entities"))
        if reply_to is not None:
            content["reply_to_message"] = reply_to
        return {"message": self._message(user_id, chat=chat, **content)}

    def _mention_entities(self, text: str, key: str) -> dict[str, Any]:
        """Entities Telegram would mark: ``@bot`` mentions (offsets in UTF-16 units)."""
        entities = []
        for m in re.finditer(r"@\w{5,32}", text):
            entities.append({"type": "mention", "offset": tg_len(text[: m.start()]), "length": tg_len(m.group())})
        return {key: entities} if entities else {}

    def make_document_update(
        self,
        user_id: int,
        data: bytes,
        *,
        file_name: str = "photo.jpg",
        mime_type: str | None = "image/jpeg",
        declared_size: int | None = -1,
        chat: dict[str, Any] | None = None,
        caption: str | None = None,
    ) -> dict[str, Any]:
        """A file sent "as a file" (uncompressed)."""
        stored = self.add_file(data, declared_size=declared_size, suffix=file_name.rsplit(".", 1)[-1], kind="documents")
        doc: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.unique_id, "file_name": file_name}
        if mime_type:
            doc["mime_type"] = mime_type
        if stored.declared_size is not None:
            doc["file_size"] = stored.declared_size
        content: dict[str, Any] = {"document": doc}
        if caption:
            content["caption"] = caption
            content.update(self._mention_entities(caption, "caption_entities"))
        return {"message": self._message(user_id, chat=chat, **content)}

    def make_text_update(self, user_id: int, text: str, *, chat: dict[str, Any] | None = None) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            length = len(text.split()[0])
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return {"message": self._message(user_id, chat=chat, **content)}

    def make_sticker_update(self, user_id: int) -> dict[str, Any]:
        stored = self.add_file(b"RIFF....WEBP", kind="stickers", suffix="webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "😀",
        }
        return {"message": self._message(user_id, sticker=sticker)}

    def make_voice_update(self, user_id: int) -> dict[str, Any]:
        stored = self.add_file(b"OggS" + b"\0" * 100, kind="voice", suffix="oga")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "duration": 2,
            "mime_type": "audio/ogg",
            "file_size": stored.declared_size,
        }
        return {"message": self._message(user_id, voice=voice)}

    def make_video_update(self, user_id: int) -> dict[str, Any]:
        stored = self.add_file(b"\0\0\0\x18ftypmp42" + b"\0" * 100, kind="videos", suffix="mp4")
        video = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "width": 640,
            "height": 360,
            "duration": 3,
            "mime_type": "video/mp4",
            "file_size": stored.declared_size,
        }
        return {"message": self._message(user_id, video=video)}

    def make_callback_update(self, user_id: int, data: str, message: dict[str, Any]) -> dict[str, Any]:
        """A press on an inline button of ``message`` (a message the bot sent)."""
        query_id = str(next(self._query_ids))
        with self._lock:
            self._open_queries[query_id] = user_id
            current = self._messages.get((message["chat"]["id"], message["message_id"]), message)
        return {
            "callback_query": {
                "id": query_id,
                "from": self.user(user_id),
                "chat_instance": f"ci-{user_id}",
                "data": data,
                "message": current,
            }
        }
