"""Wiring: build the service once and run the front-ends side by side in one loop.

Each front-end is a coroutine that serves until cancelled. A front-end that can't
start (a missing or rejected token) is reported in one line; the others go on.
Ctrl-C cancels them all and the service is closed (index saved) exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from engine.config import Settings

log = logging.getLogger(__name__)


@dataclass
class FrontEnd:
    name: str
    start: Callable[[], Coroutine[Any, Any, object]]


def startup_error_line(name: str, err: BaseException) -> str | None:
    """One clear line for an error a front-end raises when it can't start, else None."""
    if name == "telegram":
        from bot.telegram import main_line_error

        return main_line_error(err)
    if name == "discord":
        from bot.discord import DiscordStartError

        return str(err) if isinstance(err, DiscordStartError) else None
    if isinstance(err, OSError):
        return f"{name}: {err.strerror or err}"
    return None


def configured_bots(service, settings: Settings, *, webhook: dict | None = None) -> list[FrontEnd]:
    """The chat bots whose tokens are set in the environment."""
    bots: list[FrontEnd] = []
    if settings.telegram_bot_token is not None and settings.telegram_bot_token.get_secret_value().strip():
        from bot.telegram import run_telegram

        bots.append(FrontEnd("telegram", lambda: run_telegram(service, settings, **(webhook or {}))))
    if settings.discord_bot_token is not None and settings.discord_bot_token.get_secret_value().strip():
        from bot.discord import run_discord

        bots.append(FrontEnd("discord", lambda: run_discord(service, settings)))
    return bots


async def run_frontends(frontends: list[FrontEnd]) -> int:
    """Run until every front-end has stopped (or Ctrl-C). Returns an exit code: 1 when
    one failed, else 0."""
    if not frontends:
        print("Nothing to run: set TELEGRAM_BOT_TOKEN or DISCORD_BOT_TOKEN, or use `fashionbot demo`.", file=sys.stderr)
        return 2
    tasks = {asyncio.create_task(fe.start(), name=fe.name): fe for fe in frontends}
    failed = False
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = tasks[task].name
                if task.cancelled():
                    continue
                err = task.exception()
                if err is None:
                    continue
                failed = True
                line = startup_error_line(name, err)
                if line:
                    print(f"{name}: {line}" if not line.lower().startswith(name) else line, file=sys.stderr)
                else:
                    log.error("%s stopped", name, exc_info=err)
                    print(f"{name} stopped: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return 1 if failed else 0
