"""One Telegram long poller per database (``db_url``: sqlite / postgres).

Telegram hands each update to one ``getUpdates`` caller and answers a second poller 409
Conflict, so two workers polling with one token would each lose updates. `run_telegram`
takes the ``telegram-polling`` role through the service before polling: a second
FashionService on the same database, and a second real ``fashionbot telegram`` process,
are turned away with one line and a non-zero exit; a webhook worker needs no role. The
real python-telegram-bot Application runs against the fake Bot API on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from bot.telegram import POLLING_ROLE, PollingTaken, main_line_error, run_telegram
from tests.support.fakes.telegram_api import RunningBot, bot_settings, fake_api_fixture
from tests.support.settings import make_settings

ROOT = Path(__file__).resolve().parents[2]
TAKEN_LINE = "Another fashionbot process is already polling Telegram with this database"

api = pytest.fixture(fake_api_fixture, name="api")


@pytest_asyncio.fixture
async def two_services(db_url, catalogue_dir, tmp_path, backbone):
    """(A, B, url, B's data dir): two services, each with its own data dir, over one database
    (A's SQLite file, or the test's PostgreSQL database)."""
    from engine.service import FashionService

    dirs = [tmp_path / "a" / "data", tmp_path / "b" / "data"]
    for d in dirs:
        shutil.copytree(catalogue_dir, d)
    url = db_url or f"sqlite+aiosqlite:///{dirs[0] / 'fashionbot.sqlite3'}"
    services = [await FashionService.create(make_settings(d, database_url=url), backbone=backbone) for d in dirs]
    yield services[0], services[1], url, dirs[1]
    for svc in services:
        await svc.close()


async def test_a_second_poller_is_turned_away_and_a_webhook_worker_is_not(two_services, api) -> None:
    a, b, _, _ = two_services
    async with RunningBot(a, bot_settings(a, api)):
        await api.wait_for("deleteWebhook")  # polling has started (ready is set after it)
        calls_before = len(api.calls)
        with pytest.raises(PollingTaken) as info:
            await asyncio.wait_for(run_telegram(b, bot_settings(b, api)), 20)
        line = main_line_error(info.value)
        assert line is not None and "\n" not in line and line.startswith(TAKEN_LINE) and "--webhook-url" in line
        # B stopped before any Bot API call of its own (no getMe, no second poller): A's polls only
        assert {c.method for c in api.calls[calls_before:]} <= {"getUpdates"}

        # a webhook worker on the same database starts beside the poller
        port = _free_port()
        hook = "https://bot.example.com/tg/hook"
        async with RunningBot(b, bot_settings(b, api), webhook_url=hook, listen="127.0.0.1", port=port):
            assert api.webhook is not None and api.webhook["url"] == hook
        assert not await b.claim_role(POLLING_ROLE)  # still A's

    await a.close()  # A's process "ends": the role is free again
    assert await b.claim_role(POLLING_ROLE)
    assert await b.claim_role(POLLING_ROLE)  # ours already: idempotent


async def test_a_second_fashionbot_telegram_process_exits_with_one_line(two_services, api) -> None:
    """A real ``fashionbot telegram`` process (long polling) while A polls: exit code 1,
    the friendly line on stderr, no traceback; and it never called Telegram."""
    a, _, url, data_dir = two_services
    async with RunningBot(a, bot_settings(a, api)):
        await api.wait_for("deleteWebhook")  # polling has started (ready is set after it)
        calls_before = len(api.calls)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FASHIONBOT_", "TELEGRAM_", "DISCORD_"))}
        env |= {
            "FASHIONBOT_DATA_DIR": str(data_dir),
            "FASHIONBOT_DATABASE_URL": url,
            "FASHIONBOT_BACKBONE": "efficientnet-lite0",
            "FASHIONBOT_ALLOW_WEIGHT_DOWNLOAD": "false",
            "FASHIONBOT_TELEGRAM_BASE_URL": api.base_url,
            "FASHIONBOT_TELEGRAM_BASE_FILE_URL": api.base_file_url,
            "TELEGRAM_BOT_TOKEN": api.token,
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "telegram",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(child.communicate(), 180)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        text = err.decode(errors="replace")
        assert child.returncode == 1, text[-2000:]
        assert TAKEN_LINE in text and "Traceback" not in text, text[-2000:]
        assert [ln for ln in text.splitlines() if TAKEN_LINE in ln] == [f"telegram: {main_line_error(PollingTaken())}"]
        # the child stopped before its first Bot API call (A's polls only since)
        assert {c.method for c in api.calls[calls_before:]} <= {"getUpdates"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
