"""Building and running the Telegram bot: the PTB Application (long polling or a
webhook), start-up errors as one line, and the token kept out of logs."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from telegram import BotCommand, Update
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder

from bot.telegram.handlers import COMMANDS, DESCRIPTION, SHORT_DESCRIPTION, TelegramFrontend
from engine.api import FashionAPI
from engine.config import Settings

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.telegram.org"
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]


class MissingToken(RuntimeError):
    def __init__(self) -> None:
        super().__init__("No Telegram bot token: set TELEGRAM_BOT_TOKEN to the token @BotFather gave you.")


POLLING_ROLE = "telegram-polling"  # the role (``FashionAPI.claim_role``) one long-polling process holds


class PollingTaken(RuntimeError):
    """Another process on this database already long-polls Telegram. Telegram gives each
    update to one ``getUpdates`` caller and answers a second poller 409 Conflict, so two
    pollers would each lose updates; this stops the second one with a line that says what
    to do instead."""

    def __init__(self) -> None:
        super().__init__(
            "Another fashionbot process is already polling Telegram with this database; run several "
            "workers with a webhook (`fashionbot telegram --webhook-url https://…`) instead."
        )


# ---- building and running --------------------------------------------------------------
def _token(settings: Settings) -> str:
    secret = settings.telegram_bot_token
    token = secret.get_secret_value().strip() if secret is not None else ""
    if not token:
        raise MissingToken()
    return token


def build_application(
    service: FashionAPI,
    settings: Settings,
    *,
    base_url: str | None = None,
    base_file_url: str | None = None,
    concurrency: int = 64,
    max_messages_per_second: float = 30,
    max_retries: int = 3,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The PTB Application with every handler registered (not started).

    ``base_url`` / ``base_file_url`` default to the settings
    (``FASHIONBOT_TELEGRAM_BASE_URL`` / ``..._BASE_FILE_URL``), then to Telegram's;
    they follow PTB's convention: the token is appended, or replaces ``{token}``.
    ``concurrency`` updates are processed at once; outgoing requests are limited to
    ``max_messages_per_second`` (Telegram's broadcast limit; 0 turns it off) and a
    ``RetryAfter`` is waited out up to ``max_retries`` times.

    The bot's connection pool holds ``concurrency`` connections, not PTB's 256: httpcore
    looks at every pooled connection (two system calls for each idle one) whenever a
    request starts or ends, on the event loop, so a burst of 200 users that opened ~200
    connections spent 60-130 ms of loop time in single iterations of that bookkeeping
    (tests/integration/test_telegram_load.py). With one connection per update in flight
    a request at most waits briefly for a free one (``pool_timeout``).
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
        .connection_pool_size(concurrency)
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
    service: FashionAPI,
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

    Long polling first takes the ``telegram-polling`` role through the service (one process
    per database; webhooks scale out and need no role).

    Raises `MissingToken`, `PollingTaken` when another process already polls, or
    `telegram.error.InvalidToken` when Telegram rejects the token (`main_line_error` turns
    each into one line). Sets ``ready`` once serving.
    """
    app = build_application(
        service,
        settings,
        base_url=base_url,
        base_file_url=base_file_url,
        max_messages_per_second=max_messages_per_second,
    )
    if not webhook_url and not await service.claim_role(POLLING_ROLE):
        raise PollingTaken()
    async with app:  # initialize (getMe: checks the token) ... shutdown
        await describe_bot(app)
        updater = app.updater
        if updater is None:
            raise RuntimeError("the Telegram Application was built without an updater")
        await app.start()
        try:
            if webhook_url:
                path = urlsplit(webhook_url).path.strip("/")
                await updater.start_webhook(
                    listen=listen,
                    port=port,
                    url_path=path,
                    webhook_url=webhook_url,
                    allowed_updates=ALLOWED_UPDATES,
                    secret_token=secrets.token_urlsafe(32),
                )
                log.info("telegram: webhook on %s:%d/%s for %s", listen, port, path, webhook_url)
                console(f"Telegram: webhook at {webhook_url} (listening on {listen}:{port}) as @{app.bot.username}")
            else:
                await updater.start_polling(allowed_updates=ALLOWED_UPDATES, timeout=30)
                console(f"Telegram: polling as @{app.bot.username}")
            freeze_startup_heap()
            if ready is not None:
                ready.set()
            await asyncio.Event().wait()  # until cancelled
        finally:
            with contextlib.suppress(RuntimeError):
                if updater.running:
                    await updater.stop()
            if app.running:
                await app.stop()


async def describe_bot(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """The command menu, and what an empty chat with the bot shows (its description and
    short description). Cosmetic: a refusal is logged, never fatal."""
    bot = app.bot
    steps: list[tuple[str, Callable[[], Awaitable[bool]]]] = [
        ("the command menu", lambda: bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])),
        ("the description", lambda: bot.set_my_description(DESCRIPTION)),
        ("the short description", lambda: bot.set_my_short_description(SHORT_DESCRIPTION)),
    ]
    for what, call in steps:
        try:
            await call()
        except TelegramError as err:
            log.warning("telegram: couldn't set %s: %s", what, err)


def console(line: str) -> None:
    """A start-up line the operator sees whatever the log level (on stderr)."""
    log.debug("%s", line)
    print(line, file=sys.stderr, flush=True)


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
    if isinstance(err, MissingToken | PollingTaken):
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
            except Exception:  # a malformed record is logging's problem
                return record
            if any(s in text for s in _SECRETS):
                for s in _SECRETS:
                    text = text.replace(s, "<token>")
                record.msg, record.args = text, None
            return record

        logging.setLogRecordFactory(factory)
    _SECRETS.add(token)
