"""Is this URL's host on the public internet? The check behind SSRF protection.

An address is internal when it is not globally routable: loopback, private,
link-local (the cloud metadata service), carrier-grade NAT, multicast,
reserved, and the same hidden inside IPv6 (IPv4-mapped, 6to4, Teredo). Hosts
are judged by every address they resolve to, and numeric spellings that the
C resolver accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) are read the
way the resolver would read them, not as names.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

import anyio

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(ValueError):
    """The URL may not be fetched; the message says why (without secrets: URLs are logged by host only)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class AddressPolicy:
    schemes: tuple[str, ...] = ("https",)
    allow_hosts: tuple[str, ...] = ()
    """Globs; when set, only these hosts (after the address check)."""
    deny_hosts: tuple[str, ...] = ()
    allow_networks: tuple[str, ...] = ()
    """CIDRs allowed although internal (an intranet API the tool is meant to reach)."""

    def networks(self) -> list[Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.allow_networks]


@dataclass(frozen=True)
class CheckedUrl:
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]
    """Every address the host resolved to; connect to one of these, never resolve again."""


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
    return address


def is_internal(address: IPAddress, allowed: Sequence[Network] = ()) -> bool:
    inner = embedded_ipv4(address)
    if any(inner in net or address in net for net in allowed):
        return False
    return not inner.is_global or inner.is_multicast or not address.is_global


def numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host spells, in any form the C resolver accepts, else None (a name)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _host_matches(host: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(host, p.lower()) for p in patterns)


async def check_url(url: str, policy: AddressPolicy, resolve: bool = True) -> CheckedUrl:
    """Parse, apply scheme and host lists, resolve, and require every address to be public."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise AddressRefused("urls.malformed", f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in policy.schemes:
        allowed = ", ".join(policy.schemes)
        raise AddressRefused(
            "urls.scheme", f"the URL scheme {scheme or '(none)'!r} is not allowed (allowed: {allowed})"
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise AddressRefused("urls.malformed", "the URL has no host")
    if "@" in parts.netloc:
        raise AddressRefused("urls.userinfo", "URLs with credentials (user@host) are not allowed")
    port = port or (443 if scheme == "https" else 80)
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise AddressRefused("urls.malformed", f"the host is not a valid name: {exc}") from exc
    if _host_matches(host, policy.deny_hosts):
        raise AddressRefused("urls.deny_hosts", f"the host {host} is on the deny list")
    if policy.allow_hosts and not _host_matches(host, policy.allow_hosts):
        raise AddressRefused("urls.allow_hosts", f"the host {host} is not on the allow list")
    networks = policy.networks()
    literal = numeric_host(host)
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    elif not resolve:
        return CheckedUrl(scheme, host, port, ())
    else:
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise AddressRefused("urls.unresolvable", f"the host {host} does not resolve") from exc
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    internal = [a for a in addresses if is_internal(a, networks)]
    if internal:
        raise AddressRefused(
            "urls.internal_address",
            f"the host {host} resolves to an internal address ({internal[0]}); only public addresses are allowed",
        )
    return CheckedUrl(scheme, host, port, addresses)
