"""Callback URLs: their shape (checked at upload) and where they may lead (checked at delivery).

The SSRF guard resolves the host, refuses the URL when *any* address is not public (loopback,
private, link-local such as 169.254.169.254, multicast, reserved, unspecified) unless a
configured network allows it, and returns the checked address so the connection is pinned to
it: a DNS answer that changes between the check and the connect (rebinding) cannot redirect
the POST.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedUrlError(ValueError):
    """The callback URL may not be called (SSRF guard); permanent: the same URL is refused again."""


def check_callback_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; ``ValueError`` naming the problem otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"callback_url is {len(url)} characters; the limit is {MAX_URL_LENGTH}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"callback_url {url!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"callback_url {url!r} must be an absolute http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("callback_url must not carry credentials; the signature authenticates the sender")
    return url


def parse_networks(cidrs: Iterable[str]) -> tuple[IpNetwork, ...]:
    """The allowed networks of the settings; a bad entry is a readable configuration error."""
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError as exc:
        raise ValueError(f"KUBESCRIBE_NOTIFIER_ALLOWED_NETWORKS: {exc}") from exc


def is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Target:
    """A callback URL and the one address it was checked to resolve to."""

    url: str
    host: str
    port: int
    address: IpAddress

    @property
    def pinned_url(self) -> str:
        """The URL with the checked address in place of the host name (the ``Host`` header keeps the name)."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        netloc = f"{literal}:{self.port}"
        return parts._replace(netloc=netloc).geturl()


async def resolve_target(url: str, allowed: tuple[IpNetwork, ...] = ()) -> Target:
    """Resolve and check every address of ``url``'s host; :class:`RefusedUrlError` says why not."""
    check_callback_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefusedUrlError(f"cannot resolve {host!r}: {exc}") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise RefusedUrlError(f"{host!r} resolves to no address")
    for address in addresses:
        if not is_public(address) and not any(address in network for network in allowed):
            raise RefusedUrlError(
                f"{host!r} resolves to {address}, a non-public address: refused (SSRF guard); "
                "allow its network in KUBESCRIBE_NOTIFIER_ALLOWED_NETWORKS if the receiver is meant to be internal"
            )
    return Target(url=url, host=host, port=port, address=addresses[0])
