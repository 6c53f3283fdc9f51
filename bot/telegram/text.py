"""Telegram's text limits, counted the way Telegram counts (UTF-16 code units)."""

from __future__ import annotations

TEXT_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_ANSWER_MAX = 200


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
