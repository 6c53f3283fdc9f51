"""The SSRF guard: which addresses the scraper may connect to.

Shops are named by people and their pages are written by strangers, so every URL
the scraper touches (a search page, a product link, an image, a redirect target)
is untrusted. Before any connection we resolve the host ourselves and refuse it
if *any* of its addresses is not a public unicast address: private, loopback,
link-local (cloud metadata lives at 169.254.169.254), carrier-grade NAT,
multicast, unspecified, reserved, or an IPv6 spelling of one of those
(IPv4-mapped ``::ffff:10.0.0.1``, 6to4, NAT64). Checking *all* addresses matters:
a name that answers both a public and a private address lets the connector pick.

The vetted addresses are what :class:`VettedResolver` hands to aiohttp, so the
socket goes to an address we checked; a DNS answer that changes between the
check and the connect (rebinding) never reaches the connector.

The only way past is an explicit allow-list of ``host`` or ``host:port`` entries
(a local test shop, a shop on the LAN the operator chose to trust).

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

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


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
    """Why the scraper must not connect to ``ip``, or None when it is public unicast."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone id
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            form, v4 = embedded
            inner = forbidden_reason(v4)
            if inner is not None:
                return f"{form} {inner} address {v4}"
            if form in ("IPv4-mapped", "NAT64"):
                return None  # the packet goes to that public IPv4 address
        if ip in _NAT64_LOCAL:
            return "local-use NAT64"
        if ip in _IPV4_COMPATIBLE:
            return "deprecated IPv4-compatible"
        if ip in _SITE_LOCAL:
            return "site-local"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "carrier-grade NAT"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
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


def parse_allow_entry(entry: str) -> tuple[str, int | None]:
    """``"127.0.0.1:8765"`` -> ("127.0.0.1", 8765); ``"shop.lan"`` -> ("shop.lan", None);
    ``"[::1]:8080"`` -> ("::1", 8080)."""
    entry = entry.strip()
    if not entry:
        raise ValueError("empty allow-list entry")
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:  # a bare name, IPv4 or an unbracketed IPv6 address
        host, port = entry, ""
    if port and not port.isdigit():
        raise ValueError(f"bad port in allow-list entry {entry!r}")
    return _normalise_host(host), int(port) if port else None


@dataclass(frozen=True)
class VettedAddress:
    host: str  # the IP address as text
    family: int
    port: int


class AddressGuard:
    """Resolves hosts and refuses the ones that lead somewhere internal.

    Results are cached for ``cache_ttl`` seconds so the pre-flight check and the
    connector's own lookup use the same vetted answer.
    """

    def __init__(
        self,
        allow_hosts: Iterable[str] = (),
        *,
        getaddrinfo: GetAddrInfo | None = None,
        cache_ttl: float = 60.0,
    ) -> None:
        self._allow = frozenset(parse_allow_entry(e) for e in allow_hosts)
        self._getaddrinfo = getaddrinfo
        self._cache_ttl = cache_ttl
        self._cache: dict[tuple[str, int], tuple[float, list[VettedAddress]]] = {}

    def is_allowlisted(self, host: str, port: int | None) -> bool:
        host = _normalise_host(host)
        return (host, None) in self._allow or (port is not None and (host, port) in self._allow)

    async def check_url(self, url: URL) -> list[VettedAddress]:
        """Refuse non-http(s) URLs and URLs whose host is not safe; returns the vetted addresses."""
        if url.scheme not in ("http", "https"):
            raise BlockedAddress(f"scheme {url.scheme or '(none)'} not allowed", str(url))
        if not url.host:
            raise BlockedAddress("URL has no host", str(url))
        port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
        return await self.vet(url.host, port)

    async def vet(self, host: str, port: int) -> list[VettedAddress]:
        """All addresses of ``host``, or :class:`BlockedAddress` if any of them is forbidden."""
        host = _normalise_host(host)
        allowlisted = self.is_allowlisted(host, port)
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
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await self._resolve(host, port)
        if not allowlisted:
            for addr in addresses:
                reason = forbidden_reason(addr.host)
                if reason is not None:
                    raise BlockedAddress(f"blocked: {host} resolves to {_describe(addr.host, reason)}")
        if len(self._cache) >= 4096:  # a long-running bot meets many CDN hosts: drop stale answers
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + self._cache_ttl, addresses)
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
    """"private address 10.0.0.1", or "IPv4-mapped private address 10.0.0.1 (::ffff:a00:1)"."""
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
        vetted = await self._guard.vet(host, port)
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
