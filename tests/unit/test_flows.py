"""The shared front-end flows: guards in one order, trend throttling, errors as text,
the one URL policy, the picture resizer, the LRU and the garment texts."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from bot import render
from bot.flows import PhotoFlow, PhotoRequest, Refusal, TrendUnavailable, error_text, trend_updates, user_tag
from bot.lru import Lru
from bot.pictures import chat_jpeg
from bot.urls import is_public_url, public_url
from engine.config import Settings
from engine.errors import BadImage, ServiceError
from engine.types import Box, Garment, Item, Recommendation, ScoredItem, TrendProgress, UserRef

USER = UserRef("test", "4242")


class Recorder:
    """A service stand-in that records what the flow asked, in order."""

    def __init__(self, steps: list[str], *, fail: BaseException | None = None) -> None:
        self.steps, self.fail = steps, fail
        self.kwargs: dict = {}

    async def recommend(self, image, user=None, k=None, **kwargs):
        self.steps.append(f"recommend k={k}")
        self.kwargs = kwargs
        if self.fail is not None:
            raise self.fail
        return Recommendation(backbone="x", items=[])

    async def switch(self, user, request_id, garment, k=None):
        if user != USER:
            raise ServiceError("not yours")
        return Recommendation(backbone="x", items=[], request_id=request_id, garment=garment)


def flow(tmp_path, service, **overrides) -> PhotoFlow:
    settings = Settings(data_dir=tmp_path, **({"rate_limit_per_minute": 2, "top_k": 7} | overrides))
    return PhotoFlow(service, settings, limit_bytes=1000)


def request(steps: list[str], *, size: int | None = 10, data: bytes | Refusal = b"photo", refusal=None) -> PhotoRequest:
    async def download():
        steps.append("download")
        return data

    return PhotoRequest(user=USER, declared_size=size, download=download, refusal=refusal)


async def test_guards_run_in_one_order(tmp_path):
    steps: list[str] = []
    f = flow(tmp_path, Recorder(steps))
    assert isinstance(await f.photo(request(steps)), Recommendation)
    assert steps == ["download", "recommend k=7"]  # the settings' top_k, on every platform
    # declared too big: refused before any download
    steps.clear()
    result = await f.photo(request(steps, size=5000))
    assert isinstance(result, Refusal) and result.reason == "too_large" and steps == []
    # rate limit before the size check: the third request is refused whatever its size
    steps.clear()
    result = await f.photo(request(steps, size=5000))
    assert isinstance(result, Refusal) and result.reason == "rate_limited" and result.retry_after
    assert result.text == render.RATE_LIMITED.format(seconds=round(result.retry_after)) and steps == []


async def test_refusals_and_undeclared_sizes(tmp_path):
    steps: list[str] = []
    f = flow(tmp_path, Recorder(steps), rate_limit_per_minute=0)
    result = await f.photo(request(steps, refusal="not a picture"))
    assert result == Refusal("not a picture") and steps == []
    result = await f.photo(request(steps, size=None, data=b"x" * 2000))  # checked after the download
    assert isinstance(result, Refusal) and result.reason == "too_large" and steps == ["download"]
    steps.clear()
    result = await f.photo(request(steps, data=Refusal("too big says the platform", "too_large")))
    assert result == Refusal("too big says the platform", "too_large") and steps == ["download"]


async def test_extra_keys_limit_a_client_whatever_its_user(tmp_path):
    steps: list[str] = []
    f = flow(tmp_path, Recorder(steps))
    for n in range(2):
        r = request(steps)
        r.user = UserRef("web", f"fresh-cookie-{n}")
        assert isinstance(await f.photo(r, extra_keys=["address:10.0.0.1"]), Recommendation)
    r = request(steps)
    r.user = UserRef("web", "yet-another-cookie")
    result = await f.photo(r, extra_keys=["address:10.0.0.1"])
    assert isinstance(result, Refusal) and result.reason == "rate_limited"


async def test_whole_photo_and_region_reach_the_service(tmp_path):
    steps: list[str] = []
    service = Recorder(steps)
    f = flow(tmp_path, service, rate_limit_per_minute=0)
    r = request(steps)
    r.region = Box(0.1, 0.1, 0.5, 0.9)
    await f.photo(r)
    assert service.kwargs == {"region": Box(0.1, 0.1, 0.5, 0.9)}
    r = request(steps)
    r.whole_photo = True
    await f.photo(r)
    assert service.kwargs == {"whole_photo": True}


async def test_errors_become_text_with_the_user_hashed(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    steps: list[str] = []
    result = await flow(tmp_path, Recorder(steps, fail=BadImage("That image is damaged."))).photo(request(steps))
    assert result == Refusal("That image is damaged.", "not_accepted") and not caplog.records
    result = await flow(tmp_path, Recorder(steps, fail=RuntimeError("boom"))).photo(request(steps))
    assert result == Refusal(render.INTERNAL_ERROR, "failed")
    assert "boom" in caplog.text and user_tag(USER) in caplog.text
    assert "4242" not in caplog.text  # the raw id never reaches the log
    assert user_tag(USER) == user_tag(UserRef("test", "4242")) != user_tag(UserRef("other", "4242"))
    assert error_text(ServiceError("Friendly."), what="x") == "Friendly."


async def test_switch_of_someone_elses_photo_is_a_friendly_text(tmp_path):
    f = flow(tmp_path, Recorder([]))
    assert isinstance(await f.switch(USER, 5, 2), Recommendation)
    assert await f.switch(UserRef("test", "other"), 5, 2) == "not yours"


async def test_command_rate_limit(tmp_path):
    f = flow(tmp_path, Recorder([]))
    assert f.command_refusal(USER) is None and f.command_refusal(USER) is None
    refusal = f.command_refusal(USER)
    assert refusal and refusal.startswith("You're asking faster")
    assert f.command_refusal(UserRef("test", "someone else")) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TrendService:
    def __init__(self, clock: Clock, snapshots: list[tuple[float, TrendProgress]], end: BaseException | None = None):
        self.clock, self.snapshots, self.end = clock, snapshots, end
        self.closed = False

    async def trend(self, tag: str, user=None) -> AsyncIterator[TrendProgress]:
        try:
            for at, p in self.snapshots:
                self.clock.now = at
                yield p
            if self.end is not None:
                raise self.end
        finally:
            self.closed = True


def snap(n: int, done: bool = False) -> TrendProgress:
    return TrendProgress(tag="dress", shops_searched=n, shops_total=9, done=done)


async def collect(service, **kwargs) -> list[TrendProgress]:
    return [p async for p in trend_updates(service, "dress", USER, clock=service.clock, **kwargs)]


async def test_trend_progress_is_throttled_and_ends_with_the_final_snapshot():
    clock = Clock()
    service = TrendService(
        clock,
        [(0.0, snap(0)), (0.5, snap(1)), (1.0, snap(2)), (1.6, snap(3)), (1.7, snap(4)), (1.8, snap(9, done=True))],
    )
    got = await collect(service, interval=1.5)
    assert [p.shops_searched for p in got] == [0, 3, 9] and got[-1].done
    assert service.closed


async def test_trend_without_a_final_snapshot_gets_one():
    clock = Clock()
    got = await collect(TrendService(clock, [(0.0, snap(0)), (0.1, snap(1))]), interval=1.5)
    assert [(p.shops_searched, p.done) for p in got] == [(0, False), (1, True)]


async def test_trend_errors_end_the_stream_in_words(caplog):
    clock = Clock()
    got = await collect(TrendService(clock, [(0.0, snap(2))], end=ServiceError("No shops configured.")), interval=0)
    assert [(p.shops_searched, p.done, p.error) for p in got] == [(2, False, None), (2, True, "No shops configured.")]
    got = await collect(TrendService(clock, [(0.0, snap(2))], end=RuntimeError("shop exploded")), interval=0)
    assert got[-1].done and got[-1].error == render.INTERNAL_ERROR and "shop exploded" in caplog.text


async def test_trend_unavailable():
    clock = Clock()
    with pytest.raises(TrendUnavailable):
        await collect(TrendService(clock, [], end=NotImplementedError()), interval=0)


# ---- the one public-URL policy -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example.com/p/1",
        "http://www.zalando.de/a-b.html?x=1",
        "https://8.8.8.8/item",
        "https://[2001:4860:4860::8888]/x",
        "https://bücher.de/p",
        "https://shop.example.com:8443/p",
    ],
)
def test_public_urls(url):
    assert is_public_url(url) and public_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "/relative",
        "//evil.example.com/x",
        "ftp://shop.example.com/x",
        "javascript:alert(1)",
        "data:text/html,x",
        "http://localhost/x",
        "http://127.0.0.1/x",
        "http://127.1/",
        "http://0x7f.0.0.1/",
        "http://2130706433/",
        "http://017700000001/",
        "https://shop.example@evil.example/",
        "https://u:p@shop.example.com/",
        "http://printer.lan/",
        "http://printer.local/",
        "http://shop.internal/",
        "http://intranet/",
        "http://shop.example/x",
        "http://10.1.2.3/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest",
        "http://192.168.1.2/",
        "http://192.0.0.8/",
        "http://198.18.0.1/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[3fff::1]/",
        "http://[2001:db8::1]/",
        "http://224.0.0.1/",
        "http://shop.example.com:99999/",
        "https://shop.example.com/a b",
        "http://x.example.com/\nSet-Cookie",
        " https://x.example.com",
        "https:///nohost",
    ],
)
def test_local_or_odd_urls_are_refused(url):
    assert not is_public_url(url) and public_url(url) is None


# ---- the picture resizer, the LRU, the texts -------------------------------------------------------------
def png(size: tuple[int, int], mode: str = "L") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else (0, 0, 0, 0)).save(out, format="PNG")
    return out.getvalue()


def test_one_resizer_for_every_platform():
    small = Image.open(io.BytesIO(chat_jpeg(png((28, 28)), min_side=280, max_side=1280)))
    assert small.format == "JPEG" and small.size == (280, 280)
    big = Image.open(io.BytesIO(chat_jpeg(png((3000, 1500)), min_side=280, max_side=1280)))
    assert big.size == (1280, 640)
    assert Image.open(io.BytesIO(chat_jpeg(png((3000, 1500)), min_side=280, max_side=280))).size == (280, 140)
    clear = Image.open(io.BytesIO(chat_jpeg(png((40, 40), "RGBA"))))
    assert clear.getpixel((20, 20)) == (255, 255, 255)  # transparency on white
    with pytest.raises(BadImage):
        chat_jpeg(b"not a picture")
    with pytest.raises(BadImage):
        chat_jpeg(png((3000, 3000)), max_pixels=1_000_000)  # the pixel cap holds before decoding


def test_lru():
    lru: Lru[int, str] = Lru(2)
    lru.put(1, "a")
    lru.put(2, "b")
    assert lru.get(1) == "a"
    lru.put(3, "c")  # 2 was the least recently used
    assert 2 not in lru and lru.get(1) == "a" and lru.get(3) == "c" and len(lru) == 2
    assert lru.pop(1) == "a" and lru.pop(1) is None


def scored(n: int) -> ScoredItem:
    return ScoredItem(Item(id=n, title=f"Item {n}", url=None, price=1.0, currency="EUR", category=None), n, 0.9)


def garment(n: int, label: str) -> Garment:
    return Garment(number=n, group="other", label=label, box=Box(0.1, 0.1, 0.4, 0.4), confidence=0.9, items=[scored(1)])


def test_garment_texts():
    rec = Recommendation(
        backbone="x",
        items=[scored(1)],
        request_id=3,
        garment=1,
        garments=[garment(1, "coat"), garment(2, "trousers"), garment(3, "shoes")],
    )
    assert render.garments_text(rec.garments) == "I see a coat, trousers and shoes."
    intro = render.recommendation_intro(rec)
    assert intro.startswith("I see a coat, trousers and shoes. Matches for the coat (1 of 3)")
    assert render.garments_text([garment(1, "anorak")]) == "I see an anorak."
    # The astronaut photo on the web chat read "I see a sweatshirt, dress, a T-shirt and a sandal."
    assert render.garments_text([garment(1, "dress"), garment(2, "sandals")]) == "I see a dress and sandals."
    # A real portrait (matplotlib's grace_hopper.jpg) read "I see a bag, a suit, an uniform and a sandal."
    assert render.garments_text([garment(1, "uniform"), garment(2, "apron")]) == "I see a uniform and an apron."
    # Two men on OpenCV's basketball photo read "I see a T-shirt, a T-shirt and a shirt."
    two = [garment(1, "T-shirt"), garment(2, "shirt"), garment(3, "T-shirt")]
    assert render.garments_text(two) == "I see two T-shirts and a shirt."
    assert render.garments_text([garment(1, "dress"), garment(2, "dress"), garment(3, "bag")]) == (
        "I see two dresses and a bag."
    )
    assert render.garments_text([garment(1, "trousers"), garment(2, "trousers")]) == "I see two pairs of trousers."
    assert render.garments_text([garment(1, "your selection")]) == "I see your selection."
    refused = Recommendation(backbone="x", items=[], request_id=3, no_garment=True)
    assert render.recommendation_text(refused) == render.no_garment_text()
    assert render.no_garment_text().startswith("I can't see any clothing in this photo.")
    assert render.recommendation_intro(Recommendation(backbone="x", items=[scored(1)])) == ""
