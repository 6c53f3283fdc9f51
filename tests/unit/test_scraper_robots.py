"""robots.txt: RFC 9309 matching, and what fetch outcomes mean (2xx parse, 4xx allow, 5xx deny)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from scraper.fetch import Fetcher, RobotsDisallowed
from scraper.robots import RobotsCache, RobotsTxt, Rule, normalise_path, origin_of
from tests.support.fakes.shop import ConnectSpy, FakeShop, fast_config

BOT = "fashionbot"


def allowed(text: str, path: str, agent: str = BOT) -> bool:
    return RobotsTxt.parse(text).is_allowed(agent, path)


def test_longest_match_wins_in_both_directions() -> None:
    text = "User-agent: *\nDisallow: /shop/\nAllow: /shop/dresses/\nDisallow: /shop/dresses/sale\n"
    assert not allowed(text, "/shop/shoes")
    assert allowed(text, "/shop/dresses/red")
    assert not allowed(text, "/shop/dresses/sale/1")
    assert allowed(text, "/about")


def test_longest_match_beats_order() -> None:
    """First-match parsers (urllib.robotparser) get this wrong: Allow comes first but is shorter."""
    text = "User-agent: *\nAllow: /p\nDisallow: /p/private\n"
    assert not allowed(text, "/p/private/x")
    assert allowed(text, "/p/public")


def test_allow_wins_a_tie() -> None:
    assert allowed("User-agent: *\nDisallow: /page\nAllow: /page\n", "/page")
    assert allowed("User-agent: *\nAllow: /page\nDisallow: /page\n", "/page")
    assert allowed("User-agent: *\nDisallow: /*.html\nAllow: /a.html\n", "/a.html")  # 7 octets each


def test_wildcards_and_end_anchor() -> None:
    text = "User-agent: *\nDisallow: /*.pdf$\nDisallow: /search*sort=\nDisallow: /exact$\n"
    assert not allowed(text, "/files/cat.pdf")
    assert allowed(text, "/files/cat.pdf?download=1")
    assert not allowed(text, "/search?q=dress&sort=price")
    assert allowed(text, "/search?q=dress")
    assert not allowed(text, "/exact")
    assert allowed(text, "/exact/more")


def test_query_string_is_part_of_the_path() -> None:
    text = "User-agent: *\nDisallow: /search?\n"
    assert not allowed(text, "http://shop.test/search?q=dress")
    assert allowed(text, "http://shop.test/search")


def test_group_selection_by_product_token() -> None:
    text = (
        "User-agent: *\nDisallow: /\n\n"
        "User-agent: FashionBot/2.1\nDisallow: /private\n\n"
        "User-agent: otherbot\nAllow: /\n"
    )
    assert allowed(text, "/dresses")  # our group, not '*'
    assert not allowed(text, "/private/x")
    assert not allowed(text, "/dresses", agent="somebot")  # falls back to '*'
    assert allowed(text, "/dresses", agent="FASHIONBOT")  # case-insensitive


def test_groups_naming_us_are_merged_and_shared_groups_count() -> None:
    text = (
        "User-agent: fashionbot\nDisallow: /a\n\n"
        "User-agent: other\nUser-agent: fashionbot\nDisallow: /b\n\n"
        "User-agent: fashionbot\nAllow: /a/ok\n"
    )
    assert not allowed(text, "/a/x")
    assert not allowed(text, "/b/x")
    assert allowed(text, "/a/ok/1")
    assert not allowed(text, "/b/x", agent="other")
    assert allowed(text, "/a/x", agent="other")


def test_star_group_listed_with_others_is_found() -> None:
    assert not allowed("User-agent: somebot\nUser-agent: *\nDisallow: /x\n", "/x")


def test_lenient_syntax() -> None:
    text = (
        "\ufeffDisallow: /ignored-before-any-agent\r\n"
        "# comment\r\n"
        "USER-AGENT : *   # trailing comment\r\n"
        "disallow:/admin\r\n"
        "Crawl-delay: 10\r\n"
        "nonsense line\r\n"
        "Disallow:\r\n"  # empty: allows everything, adds no rule
        "Sitemap: https://shop.test/sitemap.xml\r\n"
    )
    robots = RobotsTxt.parse(text)
    assert not robots.is_allowed(BOT, "/admin/x")
    assert robots.is_allowed(BOT, "/ignored-before-any-agent")
    assert robots.is_allowed(BOT, "/anything")
    assert robots.sitemaps == ["https://shop.test/sitemap.xml"]


def test_no_matching_group_and_empty_file_allow_everything() -> None:
    assert allowed("User-agent: otherbot\nDisallow: /\n", "/x")
    assert allowed("", "/x")


def test_robots_txt_itself_is_always_allowed() -> None:
    assert allowed("User-agent: *\nDisallow: /\n", "/robots.txt")
    assert not allowed("User-agent: *\nDisallow: /\n", "/index.html")


def test_percent_encoding_is_normalised() -> None:
    assert normalise_path("/%7Efoo") == "/~foo"
    assert normalise_path("/ツ") == "/%E3%83%84"
    assert normalise_path("/a%2fb") == "/a%2Fb"  # reserved: stays encoded
    assert not allowed("User-agent: *\nDisallow: /%7Ejohn/\n", "/~john/page")
    assert not allowed("User-agent: *\nDisallow: /~john/\n", "/%7ejohn/page")
    assert not allowed("User-agent: *\nDisallow: /foo/ツ\n", "/foo/%E3%83%84")
    assert not allowed("User-agent: *\nDisallow: /foo/%e3%83%84\n", "/foo/ツ")
    assert allowed("User-agent: *\nDisallow: /a/b\n", "/a%2Fb")  # %2F is not a path separator


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, False),
        (404, True),
        (401, True),
        (403, True),
        (410, True),
        (429, False),
        (500, False),
        (503, False),
        (None, False),
    ],
)
def test_fetch_outcomes(status: int | None, expected: bool) -> None:
    """2xx: the file decides (here it disallows /x); 4xx: allow all; 429/5xx/unreachable: disallow all."""

    async def fetch(url: str) -> tuple[int | None, bytes]:
        return status, b"User-agent: *\nDisallow: /x\n"

    cache = RobotsCache(fetch)
    assert asyncio.run(cache.is_allowed("http://shop.test/x/1")) is expected


def test_origin_keys() -> None:
    assert origin_of("https://Shop.Test/a?b") == "https://shop.test:443"
    assert origin_of("http://shop.test:8080/") == "http://shop.test:8080"


@pytest.mark.asyncio
async def test_cache_fetches_once_per_origin_and_ttl() -> None:
    now = [0.0]
    calls: list[str] = []

    async def fetch(url: str) -> tuple[int | None, bytes]:
        calls.append(url)
        await asyncio.sleep(0.01)
        return 200, b"User-agent: *\nDisallow: /x\n"

    cache = RobotsCache(fetch, ttl=100, clock=lambda: now[0])
    results = await asyncio.gather(*(cache.is_allowed(f"http://a.test/p{i}") for i in range(10)))
    assert all(results)
    assert calls == ["http://a.test/robots.txt"]  # concurrent callers share one fetch
    await cache.is_allowed("http://b.test:8080/p")
    assert calls[-1] == "http://b.test:8080/robots.txt"
    now[0] = 99.0
    await cache.is_allowed("http://a.test/x")
    assert len(calls) == 2
    now[0] = 101.0
    await cache.is_allowed("http://a.test/x")
    assert len(calls) == 3


@pytest.mark.asyncio
async def test_errors_are_cached_for_the_short_error_ttl() -> None:
    now = [0.0]
    answers = [(503, b""), (200, b"User-agent: *\nAllow: /\n")]

    async def fetch(url: str) -> tuple[int | None, bytes]:
        return answers.pop(0)

    cache = RobotsCache(fetch, ttl=3600, error_ttl=60, clock=lambda: now[0])
    assert not await cache.is_allowed("http://a.test/p")
    now[0] = 61.0
    assert await cache.is_allowed("http://a.test/p")


# ---- through the fetcher, against the fake shop ---------------------------------------------
@pytest.mark.asyncio
async def test_disallowed_path_is_never_requested() -> None:
    async with FakeShop("jsonld", n_products=1) as shop, Fetcher(fast_config(shop)) as fetcher:
        with pytest.raises(RobotsDisallowed, match="disallowed by robots.txt"):
            await fetcher.fetch_page(shop.url("/private/p-hidden"))
        await fetcher.fetch_page(shop.url("/page/1"))
        await fetcher.fetch_page(shop.url("/page/2"))
    assert shop.paths() == ["/robots.txt", "/page/1", "/page/2"]  # robots.txt fetched once
    assert shop.requests[0].user_agent.startswith("fashionbot/")


@pytest.mark.asyncio
async def test_redirect_into_a_disallowed_path_is_not_followed() -> None:
    async with FakeShop("jsonld", n_products=1) as shop, Fetcher(fast_config(shop)) as fetcher:
        with pytest.raises(RobotsDisallowed):
            await fetcher.fetch_page(shop.url("/to?url=/private/p-hidden"))
    assert "/private/p-hidden" not in shop.paths()


@pytest.mark.asyncio
@pytest.mark.parametrize(("robots", "allowed_"), [(404, True), (403, True), (500, False), (503, False)])
async def test_status_of_robots_txt_decides(robots: int, allowed_: bool) -> None:
    async with FakeShop("jsonld", n_products=1, robots=robots) as shop:
        async with Fetcher(fast_config(shop, max_retries=1)) as fetcher:
            if allowed_:
                await fetcher.fetch_page(shop.url("/private/p-hidden"))  # 4xx: even this is allowed
            else:
                with pytest.raises(RobotsDisallowed, match=f"robots.txt answered HTTP {robots}"):
                    await fetcher.fetch_page(shop.url("/page/1"))
    if allowed_:
        assert shop.paths() == ["/robots.txt", "/private/p-hidden"]
    else:
        assert set(shop.paths()) == {"/robots.txt"}  # 5xx retried, the page itself never requested


@pytest.mark.asyncio
async def test_unreachable_robots_txt_means_disallow_all(monkeypatch) -> None:
    spy = ConnectSpy(asyncio.get_running_loop()).install(monkeypatch)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = fast_config(allow_hosts=frozenset({f"127.0.0.1:{port}"}), max_retries=0)
    async with Fetcher(config) as fetcher:
        assert not await fetcher.allowed_by_robots(f"http://127.0.0.1:{port}/page")
        with pytest.raises(RobotsDisallowed, match="robots.txt unreachable"):
            await fetcher.fetch_page(f"http://127.0.0.1:{port}/page")
    assert spy.addresses == [("127.0.0.1", port)]  # one attempt, for robots.txt, then cached


# ---- issue 16: hostile robots.txt files ------------------------------------------------------
ADVERSARIAL_WILDCARDS = "User-agent: *\nDisallow: /*a*a*a*a*a*a*a*a*a*a*a*a*b\n"  # 52 bytes; regex backtracking
ADVERSARIAL_PATH = "/" + "a" * 60  # 61 characters, no "b": every split of the a's is tried by a regex
MANY_RULES = "User-agent: *\n" + "".join(f"Disallow: /section-{i}/page\n" for i in range(40_000))
MANY_WILDCARDS = "User-agent: *\n" + "".join(f"Disallow: /*a*{i}*b$\n" for i in range(20_000))


def _timed(robots: RobotsTxt, path: str, repeat: int = 1) -> tuple[bool, float]:
    start = time.perf_counter()
    for _ in range(repeat):
        verdict = robots.is_allowed(BOT, path)
    return verdict, (time.perf_counter() - start) / repeat


def test_wildcard_backtracking_pattern_matches_in_linear_time() -> None:
    """The regex matcher ran > 15 s on this pair (killed); the glob matcher is linear in the path."""
    robots = RobotsTxt.parse(ADVERSARIAL_WILDCARDS)
    verdict, seconds = _timed(robots, ADVERSARIAL_PATH)
    assert verdict is True and seconds < 0.05, seconds
    assert not robots.is_allowed(BOT, ADVERSARIAL_PATH + "b")
    assert not robots.is_allowed(BOT, "/" + "a" * 12 + "xb")
    longer = "/" + "a" * 100_000  # 1600x longer: still well under the bound
    assert _timed(robots, longer)[1] < 0.05


def test_forty_thousand_plain_rules_are_compiled_once() -> None:
    """1.45 s per check before (4096-entry regex cache thrashed); now a set probe per prefix."""
    start = time.perf_counter()
    robots = RobotsTxt.parse(MANY_RULES)
    parse_seconds = time.perf_counter() - start
    assert not robots.is_allowed(BOT, "/section-39999/page/1")
    verdict, seconds = _timed(robots, "/section-20000/pages", repeat=100)
    assert verdict is False and seconds < 0.005, seconds
    assert _timed(robots, "/elsewhere/" + "x" * 2000, repeat=20)[1] < 0.005
    assert parse_seconds < 0.5, parse_seconds


def test_many_wildcard_rules_stay_bounded() -> None:
    robots = RobotsTxt.parse(MANY_WILDCARDS)
    verdict, seconds = _timed(robots, "/" + "a" * 60)
    assert verdict is True and seconds < 0.5, seconds
    assert not robots.is_allowed(BOT, "/xa19999b")


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/a*b*c", "/aXbYc", True), ("/a*b*c", "/aXcYb", False), ("/a**b", "/ab", True), ("/*", "/", True),
        ("/a*$", "/a", True), ("/a$", "/ab", False), ("/*.pdf$", "/x.pdf.pdf", True), ("/*.pdf$", "/x.pdfx", False),
        ("/ab*ab$", "/ab", False), ("/ab*ab$", "/abab", True), ("/a$b", "/a$b", True), ("*", "/anything", True),
        ("/a*ba$", "/abba", True), ("/a*aa$", "/aa", False), ("/a*aa$", "/aaa", True),
    ],
)  # fmt: skip
def test_glob_matches_like_the_regex_it_replaces(pattern: str, path: str, expected: bool) -> None:
    import re

    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    regex = ".*".join(re.escape(part) for part in body.split("*")) + ("\\Z" if anchored else "")
    assert (re.match(regex, path, re.DOTALL) is not None) is expected  # the reference semantics
    assert allowed(f"User-agent: *\nDisallow: {pattern}\n", path) is not expected


def test_glob_agrees_with_the_regex_on_random_patterns() -> None:
    import random
    import re

    rng = random.Random(16)
    for _ in range(3000):
        pattern = "/" + "".join(rng.choice("ab*") for _ in range(rng.randint(0, 6))) + rng.choice(["", "$"])
        path = "/" + "".join(rng.choice("ab") for _ in range(rng.randint(0, 8)))
        anchored = pattern.endswith("$")
        body = pattern[:-1] if anchored else pattern
        regex = ".*".join(re.escape(part) for part in body.split("*")) + ("\\Z" if anchored else "")
        expected = re.match(regex, path, re.DOTALL) is not None
        assert Rule(False, pattern).matches(path) is expected, (pattern, path)


@pytest.mark.asyncio
async def test_matching_runs_off_the_event_loop(monkeypatch) -> None:
    """The fetcher and the cache hand parsing and matching to a worker thread."""
    threads: list[str] = []
    original = RobotsTxt.is_allowed

    def spy(self: RobotsTxt, token: str, url: str) -> bool:
        threads.append(threading.current_thread().name)
        return original(self, token, url)

    monkeypatch.setattr(RobotsTxt, "is_allowed", spy)

    async def fetch(url: str) -> tuple[int | None, bytes]:
        return 200, ADVERSARIAL_WILDCARDS.encode()

    cache = RobotsCache(fetch)
    assert await cache.is_allowed("http://shop.test" + ADVERSARIAL_PATH)
    async with FakeShop("jsonld", n_products=1, robots=ADVERSARIAL_WILDCARDS) as shop:
        async with Fetcher(fast_config(shop)) as fetcher:
            await fetcher.fetch_page(shop.url("/page/1"))
    assert threads and threading.main_thread().name not in threads


def test_lines_without_a_colon_are_read_like_googles_parser() -> None:
    """Issue 16 #7: 'Disallow /x' is a rule (exactly key and value); longer colon-less lines are not."""
    text = "User-agent *\nDisallow /x\nAllow /x/open\nDisallow this is prose\n"
    assert not allowed(text, "/x/1")
    assert allowed(text, "/x/open/1")
    assert allowed(text, "/this")


@pytest.mark.asyncio
async def test_file_cut_at_the_cap_drops_its_partial_last_line() -> None:
    """Issue 16 #6: 'Allow: /public/only' cut to 'Allow: /' would allow everything."""
    text = "User-agent: *\nDisallow: /\nAllow: /public/only\n"
    cap = text.index("/public") + 1  # the cut leaves "Allow: /"
    async with FakeShop("jsonld", n_products=1, robots=text) as shop:
        async with Fetcher(fast_config(shop, max_robots_bytes=cap)) as fetcher:
            with pytest.raises(RobotsDisallowed):
                await fetcher.fetch_page(shop.url("/page/1"))
            robots = await fetcher.robots.get(shop.url("/"))
    assert not robots.is_allowed(BOT, "/page/1")
    assert robots.rules_for(BOT) == [Rule(False, "/")]
