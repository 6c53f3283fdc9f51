"""A fake Telegram Bot API server for tests: aiohttp on 127.0.0.1, in its own thread.

It speaks the real wire protocol, so the real python-telegram-bot ``Application``
talks to it unmodified (``base_url`` / ``base_file_url``):

* ``/bot<token>/<method>``: getMe, getUpdates (long poll with offsets), deleteWebhook,
  setWebhook, setMyCommands, setMyDescription, setMyShortDescription, sendMessage,
  sendChatAction, sendMediaGroup, sendPhoto,
  editMessageText, answerCallbackQuery, getFile; form, multipart (``attach://``
  uploads) and JSON bodies.
* ``/file/bot<token>/<path>``: file downloads (counted in ``downloads``).

Requests are checked the way Telegram checks them, answering 400 with a description
(and recording a *violation*, so a test can assert none happened): albums of 2 to
10 photos, captions ≤ 1024 and texts ≤ 4096 (UTF-16 units), ``callback_data`` ≤ 64
bytes, URL buttons only with absolute public http(s) URLs (no localhost, private
addresses or single-label hosts), replies to messages that exist, uploaded photos
that decode, callback queries answered at most once, edits that change something.
A wrong token gets 401 ``Unauthorized``.

It runs in a thread with its own event loop, like the real Telegram is on another
machine: its own work (parsing uploads, checking pictures) never shows up as a
stall in the loop under test. Test helpers (``push_update``, ``make_*_update``,
``wait_for``, ``calls``) are safe to call from the test's loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.support.fakes.telegram_methods import BotMethods
from tests.support.fakes.telegram_rules import (
    JSON_FIELDS,
    TOKEN,
    ApiError,
    Call,
    Fault,
    StoredFile,
    Violation,
    WireChecks,
)
from tests.support.fakes.telegram_updates import UpdateBuilder


class FakeBotAPI(UpdateBuilder, WireChecks, BotMethods):
    """The fake server. Use as ``with FakeBotAPI() as api:`` or ``start()`` / ``stop()``."""

    def __init__(self, token: str = TOKEN, *, bot_username: str = "fashion_test_bot") -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.calls: list[Call] = []
        self.violations: list[Violation] = []
        self.downloads: list[str] = []
        self.faults: list[Fault] = []
        self.pushed_at: dict[int, float] = {}  # update_id -> time.monotonic() when pushed
        self.webhook: dict[str, Any] | None = None
        self.commands: list[dict[str, Any]] = []
        self.description: str | None = None  # setMyDescription
        self.short_description: str | None = None  # setMyShortDescription
        self._lock = threading.RLock()
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._open_queries: dict[str, int] = {}  # callback query id -> user id, until answered
        self._chats: dict[int, dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._new_update: asyncio.Event | None = None
        self._closing = False
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    def start(self) -> FakeBotAPI:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as err:
                failure.append(err)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-telegram", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        self._new_update = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            done.result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    async def _shutdown(self) -> None:
        self._closing = True
        self._new_update.set()  # long polls return now
        await self._runner.cleanup()

    def __enter__(self) -> FakeBotAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- test helpers: what the bot did -----------------------------------------------------------
    def calls_of(self, method: str, chat_id: int | None = None, *, ok: bool | None = True) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.method == method
                and (chat_id is None or c.chat_id == chat_id)
                and (ok is None or (c.status == 200) == ok)
            ]

    def texts_to(self, chat_id: int) -> list[str]:
        return [str(c.params.get("text")) for c in self.calls_of("sendMessage", chat_id)]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 15.0,
        *,
        count: int = 1,
        ok: bool | None = True,
    ) -> list[Call]:
        """Wait (polling, from any loop) until ``count`` calls of ``method`` match."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls_of(method, ok=ok) if predicate is None or predicate(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{count} × {method} not seen within {timeout}s; got {len(found)}. "
                    f"Calls: {[c.method for c in self.calls][-30:]}; violations: {self.violations}"
                )
            await asyncio.sleep(0.005)

    def fail(
        self,
        method: str,
        code: int,
        description: str,
        *,
        chat_id: int | None = None,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Inject an error answer for the next ``times`` matching calls."""
        with self._lock:
            self.faults.append(Fault(method, code, description, chat_id, times, retry_after))

    def fail_with_retry_after(self, method: str, seconds: int = 1, *, chat_id: int | None = None) -> None:
        self.fail(method, 429, f"Too Many Requests: retry after {seconds}", chat_id=chat_id, retry_after=seconds)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        with self._lock:
            return self._messages.get((chat_id, message_id))

    # ---- the server ----------------------------------------------------------------------------------
    def _next_message_id(self, chat_id: int) -> int:
        with self._lock:
            return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        ctype = request.content_type
        if ctype == "application/json":
            params.update(await request.json())
        elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = value.file.read()
                else:
                    params[key] = value
        for key in JSON_FIELDS & params.keys():
            if isinstance(params[key], str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    raise ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
        return params, files

    async def _api(self, request: web.Request) -> web.Response:
        """One Bot API call. It enters ``calls`` once answered (``at`` is its arrival)."""
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        call = Call(method=method, params={}, files={}, at=time.monotonic())
        try:
            call.params, call.files = await self._params(request)
            self._injected_fault(call)
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            call.result = await handler(call.params, call.files)
        except ApiError as err:
            call.status, call.error = err.code, err.description
            if err.violation:
                with self._lock:
                    self.violations.append(Violation(method, err.description, call.params))
            body: dict[str, Any] = {"ok": False, "error_code": err.code, "description": err.description}
            if err.retry_after is not None:
                body["parameters"] = {"retry_after": err.retry_after}
            return web.json_response(body, status=err.code)
        finally:
            with self._lock:
                self.calls.append(call)
        return web.json_response({"ok": True, "result": call.result})

    def _injected_fault(self, call: Call) -> None:
        with self._lock:
            for fault in self.faults:
                if (
                    fault.times > 0
                    and fault.method == call.method
                    and (fault.chat_id is None or fault.chat_id == call.chat_id)
                ):
                    fault.times -= 1
                    raise ApiError(fault.code, fault.description, violation=False, retry_after=fault.retry_after)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        path = request.match_info["path"]
        with self._lock:
            stored = self._files_by_path.get(path)
            self.downloads.append(path)
        if stored is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")


# ---- running the real bot against the fake ------------------------------------------------------------------
class RunningBot:
    """``async with RunningBot(service, settings): ...``: the real ``run_telegram``
    (long polling, or a webhook) as a task, started and ready, cancelled on exit."""

    def __init__(self, service: Any, settings: Any, **kwargs: Any) -> None:
        self.service, self.settings, self.kwargs = service, settings, kwargs
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> RunningBot:
        from bot.telegram import run_telegram

        ready = asyncio.Event()
        self.task = asyncio.create_task(run_telegram(self.service, self.settings, ready=ready, **self.kwargs))
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({self.task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self.task in done:
            self.task.result()  # raises the startup error
            raise RuntimeError("run_telegram returned without serving")
        if not done:
            self.task.cancel()
            raise TimeoutError("the bot didn't start within 20 s")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass


def bot_settings(service: Any, api: FakeBotAPI, **overrides: Any) -> Any:
    """The service's settings, pointed at the fake (token and both base URLs)."""
    from pydantic import SecretStr

    return service.settings.model_copy(
        update={
            "telegram_bot_token": SecretStr(api.token),
            "telegram_base_url": api.base_url,
            "telegram_base_file_url": api.base_file_url,
            **overrides,
        }
    )


def fake_api_fixture():
    """A started FakeBotAPI; fails the test if the bot sent anything Telegram would refuse."""
    with FakeBotAPI() as fake:
        yield fake
    assert not fake.violations, f"requests Telegram would refuse: {fake.violations}"
