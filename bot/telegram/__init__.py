"""The Telegram front-end: a thin python-telegram-bot (v22) adapter over the service API.

A photo (compressed, or an image sent as a file) goes through the shared photo flow
(:mod:`bot.flows`: rate limit → declared size → download → recommend); the answer
names the garments found, sends one album of the shown garment's items and one
message with link, 👍 / 👎 and switch-garment buttons. Commands map one-to-one onto
service calls; anything else gets a short hint.

Rooms: ``handlers`` (receive and answer updates), ``keyboards`` (buttons and their
callback data), ``text`` (Telegram's length rules), ``media`` (which photo version to
fetch, album pictures and their file_ids), ``run`` (Application, polling / webhook,
start-up errors, token redaction).
"""

from __future__ import annotations

from bot.telegram.handlers import (
    BUTTON_EXPIRED,
    COMMANDS,
    NOT_AN_IMAGE,
    UNKNOWN_COMMAND,
    WELCOME,
    TelegramFrontend,
)
from bot.telegram.keyboards import CALLBACK_DATA_MAX, forget_data, parse_switch, switch_data
from bot.telegram.run import (
    POLLING_ROLE,
    MissingToken,
    PollingTaken,
    build_application,
    freeze_startup_heap,
    main_line_error,
    run_telegram,
)

__all__ = [
    "BUTTON_EXPIRED",
    "CALLBACK_DATA_MAX",
    "COMMANDS",
    "MissingToken",
    "POLLING_ROLE",
    "PollingTaken",
    "NOT_AN_IMAGE",
    "TelegramFrontend",
    "UNKNOWN_COMMAND",
    "WELCOME",
    "build_application",
    "forget_data",
    "freeze_startup_heap",
    "main_line_error",
    "parse_switch",
    "run_telegram",
    "switch_data",
]
