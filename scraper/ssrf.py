"""The SSRF guard: which addresses the scraper may connect to.

Shops are named by people and their pages are written by strangers, so every URL
the scraper touches (a search page, a product link, an image, a redirect target)
is untrusted. Before any connection we resolve the host ourselves and refuse it
if *any* of its addresses is not a public unicast address: private, loopback,
link-local (cloud metadata lives at 169.254.169.254), carrier-grade NAT,
multicast, unspecified, reserved, any other special-purpose range of the IANA
registries, or an IPv6 spelling of one of those (IPv4-mapped ``::ffff:10.0.0.1``,
6to4, NAT64, Teredo). Checking *all* addresses matters: a name that answers both
a public and a private address lets the connector pick.

The verdict comes from our own tables (:data:`IPV4_DENY`, :data:`IPV6_DENY`, and
"IPv6 outside 2000::/3 is not global unicast"), not from ``ipaddress``'s
``is_private``/``is_global`` flags, whose answers changed between Python releases
(3.11 passes ``192.0.0.8`` and ``3fff::1``).

The vetted addresses are what :class:`VettedResolver` hands to aiohttp, so the
socket goes to an address we checked; a DNS answer that changes between the
check and the connect (rebinding) never reaches the connector.

The only way past is an explicit allow-list of ``host:port`` entries (a port is
required: a bare host would open every local service, the web chat and the
webhook included). Entries are scoped: a shop's own ``allow_hosts`` apply only to
that shop's fetches (``scope=`` below); the global list (``FetchConfig.allow_hosts``,
``FASHIONBOT_SCRAPER_ALLOW_HOSTS``) applies to every fetch.

``FetchError`` lives here only because this is the lowest layer of the package;
import the errors from :mod:`scraper.fetch` or :mod:`scraper`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> getaddrinfo-style tuples; injectable so tests never touch real DNS.
GetAddrInfo = Callable[[str, int], Awaitable[list[tuple[Any, ...]]]]

AllowList = frozenset[tuple[str, int]]  # (normalised host, port)


def _table(*rows: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(net), reason) for net, reason in rows)


# IANA IPv4 Special-Purpose Address Registry: every block not globally reachable (most specific first).
IPV4_DENY = _table(
    ("0.0.0.0/32", "unspecified"),
    ("0.0.0.0/8", "this-network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "deprecated 6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
)
# IANA IPv6 Special-Purpose Address Registry, plus the ranges that are not unicast at all.
# ::ffff:0:0/96 (IPv4-mapped), 64:ff9b::/96 (NAT64), 2002::/16 (6to4) and 2001::/32 (Teredo)
# carry an IPv4 address, which is checked first (see _embedded_ipv4).
IPV6_DENY = _table(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "deprecated IPv4-compatible"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignment"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment-routing"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


class FetchError(Exception):
    """Base of every scraper fetch failure. ``reason`` is short, for progress reports."""

    def __init__(self, reason: str, url: str | None = None) -> None:
        super().__init__(reason if url is None else f"{reason} ({url})")
        self.reason = reason
        self.url = url


class BlockedAddress(FetchError):
    """The URL points at an address the scraper must not connect to."""


class UnresolvableHost(FetchError):
    """DNS gave no usable answer for the host."""


def forbidden_reason(ip: IPAddress | str) -> str | None:
    """Why the scraper must not connect to ``ip``, or None when it is public unicast.

    Decided by our own tables only, so the answer is the same on every Python version."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv4Address):
        return _lookup(ip, IPV4_DENY)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        form, v4 = embedded
        inner = forbidden_reason(v4)
        if inner is not None:
            return f"{form} {inner} address {v4}"
        if form in ("IPv4-mapped", "NAT64"):
            return None  # the packet goes to that public IPv4 address
    reason = _lookup(ip, IPV6_DENY)
    if reason is not None:
        return reason
    if ip not in _GLOBAL_UNICAST_V6:
        return "not global unicast"
    return None


def _lookup(ip: IPAddress, table: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]) -> str | None:
    for network, reason in table:
        if ip in network:
            return reason
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address some IPv6 forms carry, with the form's name."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip in _NAT64_WELL_KNOWN:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return "Teredo", ip.teredo[1]
    return None


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def parse_allow_entry(entry: str) -> tuple[str, int]:
    """``"127.0.0.1:8765"`` -> ("127.0.0.1", 8765); ``"[::1]:8080"`` -> ("::1", 8080).

    A port is required: ``"shop.lan"`` raises ValueError (it would open every port of the host)."""
    entry = str(entry).strip()
    if not entry:
        raise ValueError("empty allow-list entry")
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:  # a bare name, IPv4 or an unbracketed IPv6 address
        host, port = entry, ""
    if not port:
        raise ValueError(f"allow-list entry {entry!r} needs a port (host:port, [v6]:port)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in allow-list entry {entry!r}")
    host = _normalise_host(host)
    if not host:
        raise ValueError(f"allow-list entry {entry!r} has no host")
    return host, int(port)


def parse_allow_list(entries: Iterable[str]) -> AllowList:
    """Parse ``host:port`` entries; ValueError names the first bad one."""
    return frozenset(parse_allow_entry(e) for e in entries)


@dataclass(frozen=True)
class VettedAddress:
    host: str  # the IP address as text
    family: int
    port: int


@dataclass(frozen=True)
class _Vetted:
    expires: float
    addresses: list[VettedAddress]
    public: bool  # False: admitted only by an allow-list entry


class AddressGuard:
    """Resolves hosts and refuses the ones that lead somewhere internal.

    Results are cached for ``cache_ttl`` seconds so the pre-flight check and the
    connector's own lookup use the same vetted answer. An answer admitted only by
    an allow-list entry is reused by a later pre-flight check only when that check's
    scope admits the host too.
    """

    def __init__(
        self,
        allow_hosts: Iterable[str] = (),
        *,
        getaddrinfo: GetAddrInfo | None = None,
        cache_ttl: float = 60.0,
    ) -> None:
        self._allow = parse_allow_list(allow_hosts)
        self._getaddrinfo = getaddrinfo
        self._cache_ttl = cache_ttl
        self._cache: dict[tuple[str, int], _Vetted] = {}

    def is_allowlisted(self, host: str, port: int | None, scope: AllowList = frozenset()) -> bool:
        if port is None:
            return False
        key = (_normalise_host(host), port)
        return key in self._allow or key in scope

    async def check_url(self, url: URL, scope: AllowList = frozenset()) -> list[VettedAddress]:
        """Refuse non-http(s) URLs and URLs whose host is not safe; returns the vetted addresses.

        ``scope``: the allow-list entries of the shop this fetch is for (besides the global ones)."""
        if url.scheme not in ("http", "https"):
            raise BlockedAddress(f"scheme {url.scheme or '(none)'} not allowed", str(url))
        if not url.host:
            raise BlockedAddress("URL has no host", str(url))
        port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
        return await self.vet(url.host, port, scope)

    async def vet(
        self, host: str, port: int, scope: AllowList = frozenset(), *, connecting: bool = False
    ) -> list[VettedAddress]:
        """All addresses of ``host``, or :class:`BlockedAddress` if any of them is forbidden.

        ``connecting``: the connector asks for a host a pre-flight check has just vetted
        (under its scope); any fresh cached answer is used, a miss is vetted without scope."""
        host = _normalise_host(host)
        allowlisted = self.is_allowlisted(host, port, scope)
        literal = _literal_ip(host)
        if literal is not None:
            if not allowlisted:
                reason = forbidden_reason(literal)
                if reason is not None:
                    raise BlockedAddress(f"blocked {_describe(literal, reason)}")
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [VettedAddress(str(literal), family, port)]

        key = (host, port)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached.expires > now and (cached.public or allowlisted or connecting):
            return cached.addresses
        addresses = await self._resolve(host, port)
        public = True
        for addr in addresses:
            reason = forbidden_reason(addr.host)
            if reason is not None:
                if not allowlisted:
                    raise BlockedAddress(f"blocked: {host} resolves to {_describe(addr.host, reason)}")
                public = False
        if len(self._cache) >= 4096:  # a long-running bot meets many CDN hosts: drop stale answers
            self._cache = {k: v for k, v in self._cache.items() if v.expires > now}
        self._cache[key] = _Vetted(now + self._cache_ttl, addresses, public)
        return addresses

    async def _resolve(self, host: str, port: int) -> list[VettedAddress]:
        try:
            if self._getaddrinfo is not None:
                infos = await self._getaddrinfo(host, port)
            else:
                loop = asyncio.get_running_loop()
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as err:
            raise UnresolvableHost(f"cannot resolve {host}: {getattr(err, 'strerror', None) or err}") from None
        seen: dict[str, VettedAddress] = {}
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = str(sockaddr[0]).split("%", 1)[0]
            seen.setdefault(ip, VettedAddress(ip, family, port))
        if not seen:
            raise UnresolvableHost(f"no address for {host}")
        return list(seen.values())


def _describe(ip: object, reason: str) -> str:
    """ "private address 10.0.0.1", or "IPv4-mapped private address 10.0.0.1 (::ffff:a00:1)"."""
    return f"{reason} ({ip})" if " address " in reason else f"{reason} address {ip}"


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


class VettedResolver(AbstractResolver):
    """aiohttp resolver that only ever returns addresses the guard approved.

    Used with ``use_dns_cache=False`` so every connection asks it; it answers from
    the guard's vetted cache (filled by the pre-flight check) and re-vets on a miss.
    """

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        vetted = await self._guard.vet(host, port, connecting=True)
        results: list[ResolveResult] = [
            {
                "hostname": host,
                "host": a.host,
                "port": port,
                "family": a.family,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            }
            for a in vetted
            if family in (0, socket.AF_UNSPEC) or a.family == family
        ]
        if not results:
            raise UnresolvableHost(f"no address of the requested family for {host}")
        return results

    async def close(self) -> None:
        return None
