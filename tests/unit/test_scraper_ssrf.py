"""SSRF guard: internal addresses are refused before any connection, at every redirect hop."""

from __future__ import annotations

import asyncio
import socket

import pytest
import pytest_asyncio

from scraper.fetch import BlockedAddress, FetchConfig, Fetcher, UnresolvableHost
from scraper.sources import Shop, ShopConfigError
from scraper.ssrf import AddressGuard, VettedResolver, forbidden_reason, parse_allow_entry, parse_allow_list
from tests.support.fakes.shop import METADATA_URL, PRIVATE_URL, ConnectSpy, FakeDNS, FakeShop, fast_config

FORBIDDEN = {
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "169.254.169.254": "link-local",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "0.0.0.0": "unspecified",
    "224.0.0.1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    "192.0.2.1": "documentation",
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "ff02::1": "multicast",
    "fec0::1": "site-local",
    "2001:db8::1": "documentation",
    "::ffff:10.0.0.1": "IPv4-mapped private address 10.0.0.1",
    "::ffff:127.0.0.1": "IPv4-mapped loopback address 127.0.0.1",
    "::ffff:169.254.169.254": "IPv4-mapped link-local address 169.254.169.254",
    "2002:a00:1::1": "6to4 private address 10.0.0.1",
    "2002:a9fe:a9fe::": "6to4 link-local address 169.254.169.254",
    "64:ff9b::a00:1": "NAT64 private address 10.0.0.1",
    "64:ff9b::7f00:1": "NAT64 loopback address 127.0.0.1",
    "64:ff9b:1::1": "local-use NAT64",
    "::10.0.0.1": "deprecated IPv4-compatible",
}
# The IANA special-purpose ranges, named by our own table: the same verdict on every Python
# version (3.11's ipaddress passes 192.0.0.8 and 3fff::1).
SPECIAL_PURPOSE = {
    "0.1.2.3": "this-network",
    "192.0.0.8": "IETF protocol assignment",
    "192.0.0.170": "IETF protocol assignment",
    "198.18.0.1": "benchmarking",
    "198.19.255.254": "benchmarking",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "192.88.99.1": "deprecated 6to4 relay",
    "100::1": "discard-only",
    "2001:2::1": "IETF protocol assignment",
    "2001:10::1": "IETF protocol assignment",
    "3fff::1": "documentation",
    "3fff:fff:ffff::1": "documentation",
    "5f00::1": "segment-routing",
    "::ffff:192.0.0.8": "IPv4-mapped IETF protocol assignment address 192.0.0.8",
    "::ffff:198.18.0.1": "IPv4-mapped benchmarking address 198.18.0.1",
    "64:ff9b::c000:8": "NAT64 IETF protocol assignment address 192.0.0.8",
    "64:ff9b::cb00:7101": "NAT64 documentation address 203.0.113.1",
    "4000::1": "not global unicast",  # outside 2000::/3
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7": "IETF protocol assignment",  # Teredo, client 8.8.8.8
}
PUBLIC = [
    "93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
    "192.0.1.1", "192.0.3.1", "198.17.255.255", "198.20.0.1", "223.255.255.254", "2001:200::1", "2a00::1",
]  # fmt: skip


@pytest.mark.parametrize(("address", "reason"), sorted(FORBIDDEN.items()))
def test_forbidden_addresses_are_named(address: str, reason: str) -> None:
    assert forbidden_reason(address) == reason


@pytest.mark.parametrize(("address", "reason"), sorted(SPECIAL_PURPOSE.items()))
def test_special_purpose_ranges_are_refused_on_every_python(address: str, reason: str) -> None:
    assert forbidden_reason(address) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_reason(address) is None


def test_allow_entries_parse() -> None:
    assert parse_allow_entry("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_allow_entry("Shop.LAN.:8080") == ("shop.lan", 8080)
    assert parse_allow_entry("[::1]:8080") == ("::1", 8080)
    for bad in ("host:http", "127.0.0.1:0", "127.0.0.1:70000", ":80", ""):
        with pytest.raises(ValueError):
            parse_allow_entry(bad)


@pytest.mark.parametrize("entry", ["127.0.0.1", "shop.lan", "::1", "[::1]"])
def test_allow_entries_need_a_port(entry: str) -> None:
    """A bare host would open every port of it: the web chat, the webhook, a database."""
    with pytest.raises(ValueError, match="needs a port"):
        parse_allow_entry(entry)
    with pytest.raises(ValueError, match="needs a port"):
        FetchConfig(allow_hosts=frozenset({entry}))  # FASHIONBOT_SCRAPER_ALLOW_HOSTS
    with pytest.raises(ShopConfigError, match="needs a port"):
        Shop("LAN shop", "http://shop.lan:8080/s?q={query}", allow_hosts=(entry,))


def test_shop_allow_hosts_are_normalised() -> None:
    shop = Shop("LAN shop", "http://shop.lan:8080/s?q={query}", allow_hosts=("Shop.LAN:8080", "[::1]:9000"))
    assert shop.allow_hosts == ("shop.lan:8080", "[::1]:9000")
    assert parse_allow_list(shop.allow_hosts) == {("shop.lan", 8080), ("::1", 9000)}


@pytest.mark.asyncio
async def test_scoped_entries_admit_only_their_own_fetches() -> None:
    dns = FakeDNS({"shop.lan": ["192.168.1.5"]})
    guard = AddressGuard(getaddrinfo=dns)
    scope = parse_allow_list(["shop.lan:8080"])
    assert [a.host for a in await guard.vet("shop.lan", 8080, scope)] == ["192.168.1.5"]
    # the answer admitted for that shop is cached, but not for a fetch without the entry
    with pytest.raises(BlockedAddress, match="shop.lan resolves to private address 192.168.1.5"):
        await guard.vet("shop.lan", 8080)
    with pytest.raises(BlockedAddress, match="private"):
        await guard.vet("shop.lan", 8081, scope)  # another port of the same host
    # the connector, right after a scoped pre-flight check, gets the vetted answer
    await guard.vet("shop.lan", 8080, scope)
    results = await VettedResolver(guard).resolve("shop.lan", 8080, family=socket.AF_UNSPEC)
    assert [r["host"] for r in results] == ["192.168.1.5"]


@pytest.mark.asyncio
async def test_guard_refuses_when_any_address_is_internal() -> None:
    dns = FakeDNS({"shop.test": ["93.184.216.34"], "mixed.test": ["93.184.216.34", "10.0.0.1"]})
    guard = AddressGuard(getaddrinfo=dns)
    assert [a.host for a in await guard.vet("shop.test", 80)] == ["93.184.216.34"]
    with pytest.raises(BlockedAddress, match="mixed.test resolves to private address 10.0.0.1"):
        await guard.vet("mixed.test", 80)
    with pytest.raises(UnresolvableHost):
        await guard.vet("nowhere.test", 80)


@pytest.mark.asyncio
async def test_allow_list_is_exact_about_ports() -> None:
    guard = AddressGuard(["127.0.0.1:8765"])
    assert [a.host for a in await guard.vet("127.0.0.1", 8765)] == ["127.0.0.1"]
    with pytest.raises(BlockedAddress, match="loopback"):
        await guard.vet("127.0.0.1", 8766)
    with pytest.raises(BlockedAddress, match="loopback"):
        await guard.vet("::ffff:127.0.0.1", 8765)  # another spelling is not the allow-listed host


@pytest.mark.asyncio
async def test_resolver_returns_only_the_vetted_answer_under_rebinding() -> None:
    """First answer public, every later answer private: the connector gets the vetted one."""
    dns = FakeDNS({"rebind.test": [["93.184.216.34"], ["127.0.0.1"]]})
    guard = AddressGuard(getaddrinfo=dns)
    await guard.vet("rebind.test", 80)  # the pre-flight check
    results = await VettedResolver(guard).resolve("rebind.test", 80, family=socket.AF_UNSPEC)
    assert [r["host"] for r in results] == ["93.184.216.34"]
    assert dns.lookups == ["rebind.test"]  # no second lookup that could have been rebound


@pytest.mark.asyncio
async def test_resolver_itself_refuses_internal_names() -> None:
    """Even a caller that skips the pre-flight check cannot get an internal address from the resolver."""
    resolver = VettedResolver(AddressGuard(getaddrinfo=FakeDNS({"internal.test": ["169.254.169.254"]})))
    with pytest.raises(BlockedAddress, match="link-local"):
        await resolver.resolve("internal.test", 80)


@pytest_asyncio.fixture
async def shop():
    async with FakeShop("jsonld", n_products=3) as s:
        yield s


@pytest.mark.asyncio
async def test_a_shops_own_entry_does_not_admit_it_for_other_shops(monkeypatch) -> None:
    """Issue 16 #10: the entry written for shop A admits A's fetches only; shop B (or a page of
    another shop linking to A's address) is refused before connecting."""
    spy = ConnectSpy(asyncio.get_running_loop()).install(monkeypatch)
    async with FakeShop("jsonld", n_products=1) as a, Fetcher(fast_config()) as fetcher:  # no global entries
        own = (a.allow_entry,)
        page = await fetcher.fetch_page(a.url("/page/1"), allow_hosts=own)
        assert "page 1" in page.text()
        image = await fetcher.fetch_image(a.url("/img/p-001.jpg"), allow_hosts=own)
        assert image.content_type == "image/jpeg"
        with pytest.raises(BlockedAddress, match="loopback"):
            await fetcher.fetch_page(a.url("/page/2"))  # another shop's fetch: no scope
        with pytest.raises(BlockedAddress, match="loopback"):
            await fetcher.fetch_page(f"http://127.0.0.1:{a.port + 1}/", allow_hosts=own)  # another port
    assert a.paths() == ["/robots.txt", "/page/1", "/img/p-001.jpg"]
    assert set(spy.addresses) == {("127.0.0.1", a.port)}


@pytest.mark.asyncio
async def test_name_that_resolves_to_a_listening_local_server_is_refused(shop: FakeShop, monkeypatch) -> None:
    """The fake DNS points internal.test at the shop, which is listening: a missing check would connect."""
    dns = FakeDNS({"internal.test": ["127.0.0.1"]})
    spy = ConnectSpy(asyncio.get_running_loop()).install(monkeypatch)
    async with Fetcher(fast_config(shop), getaddrinfo=dns) as fetcher:
        with pytest.raises(BlockedAddress, match="internal.test resolves to loopback address 127.0.0.1"):
            await fetcher.fetch_page(f"http://internal.test:{shop.port}/page/1")
    assert shop.requests == []
    assert spy.addresses == []


@pytest.mark.asyncio
async def test_control_the_same_name_connects_when_allow_listed(shop: FakeShop, monkeypatch) -> None:
    """Proves the previous test's setup would really connect: only the guard stood in the way."""
    dns = FakeDNS({"internal.test": ["127.0.0.1"]})
    spy = ConnectSpy(asyncio.get_running_loop()).install(monkeypatch)
    config = fast_config(shop, allow_hosts=frozenset({f"internal.test:{shop.port}"}))
    async with Fetcher(config, getaddrinfo=dns) as fetcher:
        page = await fetcher.fetch_page(f"http://internal.test:{shop.port}/page/1")
    assert "page 1" in page.text()
    assert ("127.0.0.1", shop.port) in spy.addresses
    assert shop.paths() == ["/robots.txt", "/page/1"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (METADATA_URL, "blocked link-local address 169.254.169.254"),
        (PRIVATE_URL, "blocked private address 10.0.0.1"),
        ("http://[::ffff:10.0.0.1]/", "blocked IPv4-mapped private address 10.0.0.1 (::ffff:a00:1)"),
        ("http://[::ffff:127.0.0.1]:{port}/page/1", "blocked IPv4-mapped loopback address 127.0.0.1"),
        ("http://100.64.0.1/", "blocked carrier-grade NAT address 100.64.0.1"),
        ("http://127.0.0.1:1/", "blocked loopback address 127.0.0.1"),  # allow-listed host, other port
        ("file:///etc/passwd", "scheme file not allowed"),
        ("gopher://127.0.0.1:{port}/", "scheme gopher not allowed"),
    ],
)
async def test_redirects_to_internal_targets_are_refused_before_connecting(
    shop: FakeShop, monkeypatch, target: str, reason: str
) -> None:
    target = target.replace("{port}", str(shop.port))
    dns = FakeDNS({})
    spy = ConnectSpy(asyncio.get_running_loop()).install(monkeypatch)
    async with Fetcher(fast_config(shop), getaddrinfo=dns) as fetcher:
        with pytest.raises(BlockedAddress) as info:
            await fetcher.fetch_page(shop.url("/to?url=") + target.replace("&", "%26"))
    assert info.value.reason.startswith(reason)
    assert shop.paths() == ["/robots.txt", "/to"]  # the redirect was read, its target never requested
    assert {addr for addr in spy.addresses} == {("127.0.0.1", shop.port)}  # only the shop itself
    assert dns.lookups == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "url",
    [
        "http://[::ffff:10.0.0.1]/",
        "http://[::ffff:a00:1]:8080/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/",
    ],
)
async def test_direct_internal_urls_are_refused(monkeypatch, url: str) -> None:
    spy = ConnectSpy(asyncio.get_running_loop()).install(monkeypatch)
    async with Fetcher(fast_config()) as fetcher:
        with pytest.raises(BlockedAddress):
            await fetcher.fetch_page(url)
        with pytest.raises(BlockedAddress):
            await fetcher.fetch_image(url)
    assert spy.addresses == []


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1"])
async def test_legacy_numeric_ipv4_spellings_are_refused(shop: FakeShop, monkeypatch, host: str) -> None:
    """Decimal / hex / short forms that socket maps onto 127.0.0.1; the shop is listening there."""
    spy = ConnectSpy(asyncio.get_running_loop()).install(monkeypatch)
    async with Fetcher(fast_config(shop)) as fetcher:
        with pytest.raises(BlockedAddress, match="loopback address 127.0.0.1"):
            await fetcher.fetch_page(f"http://{host}:{shop.port}/page/1")
    assert shop.requests == []
    assert spy.addresses == []
