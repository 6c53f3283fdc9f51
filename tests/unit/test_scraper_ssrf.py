"""SSRF guard: internal addresses are refused before any connection, at every redirect hop."""
from __future__ import annotations

import asyncio
import socket

import pytest
import pytest_asyncio

from scraper.fetch import BlockedAddress, Fetcher, UnresolvableHost
from scraper.ssrf import AddressGuard, VettedResolver, forbidden_reason, parse_allow_entry
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
    "240.0.0.1": "private",  # Python files 240/4 under both private and reserved; refused either way
    "255.255.255.255": "private",
    "192.0.2.1": "private",  # documentation range
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "ff02::1": "multicast",
    "fec0::1": "site-local",
    "2001:db8::1": "private",
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
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize(("address", "reason"), sorted(FORBIDDEN.items()))
def test_forbidden_addresses_are_named(address: str, reason: str) -> None:
    assert forbidden_reason(address) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_reason(address) is None


def test_allow_entries_parse() -> None:
    assert parse_allow_entry("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_allow_entry("Shop.LAN.") == ("shop.lan", None)
    assert parse_allow_entry("[::1]:8080") == ("::1", 8080)
    assert parse_allow_entry("::1") == ("::1", None)
    with pytest.raises(ValueError):
        parse_allow_entry("host:http")


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
    ["http://[::ffff:10.0.0.1]/", "http://[::ffff:a00:1]:8080/x", "http://169.254.169.254/latest/meta-data/", "http://localhost/"],
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
