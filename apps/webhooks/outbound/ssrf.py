"""Which addresses a client's webhook may reach (server-side request forgery guard).

A webhook URL is the client's input, and NotifyHub's workers sit inside our network: without a
guard, a URL could make them POST to the cloud metadata service, a database admin page or
anything else on a private network. The check runs at connect time, on the addresses the host
resolves to, and the connection is then made to the checked address (transport.py), so a DNS
answer that changes between the check and the connect (rebinding) cannot get around it.

Refused unless allowed by settings: loopback, private (RFC 1918, ULA), link-local, multicast,
reserved, unspecified, shared/CGNAT (100.64.0.0/10), any other address that is not globally
routable, and IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, Teredo,
NAT64) whose IPv4 address is refused. Numeric IPv4 spellings that resolvers accept
(2130706433, 0x7f000001, 0177.0.0.1, 127.1) are read as the address they denote.

Cloud metadata addresses (169.254.169.254, fd00:ec2::254), unspecified and multicast addresses
are refused always. `WEBHOOKS_ALLOW_PRIVATE_NETWORKS` allows every other address (local
development and tests: receivers on 127.0.0.1); `WEBHOOKS_ALLOWED_NETWORKS` allows the listed
CIDRs only (an internal receiver in production).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from functools import lru_cache

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack …
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
})
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# What C's inet_aton accepts besides dotted quads: decimal, hex and octal parts, 1 to 4 parts.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
LOCALHOST_NAMES = re.compile(r"^(localhost|.+\.localhost)\.?$", re.IGNORECASE)


class BlockedAddress(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


class ResolutionError(Exception):
    """The host name does not resolve."""


def host_literal(host: str) -> IPAddress | None:
    """The address a host written as an IP literal denotes (any spelling), else None."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (and routes to), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _allowed_by_settings(address: IPAddress) -> bool:
    if settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS:
        return True
    return any(address in network
               for network in _networks(tuple(settings.WEBHOOKS_ALLOWED_NETWORKS)))


def _kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_ADDRESS_SPACE:
        return "shared (carrier-grade NAT)"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    return "not globally routable"


def address_refusal(address: IPAddress) -> str | None:
    """Why webhooks may not connect to this address, or None if they may."""
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = address_refusal(inner)
            return f"{address} embeds {inner}: {reason}" if reason else None
    if address.is_unspecified:
        return f"{address} is the unspecified address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if address.is_global and not (isinstance(address, ipaddress.IPv4Address)
                                  and address in SHARED_ADDRESS_SPACE):
        return None
    if _allowed_by_settings(address):
        return None
    return f"{address} is a {_kind(address)} address"


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host name resolves to (the system resolver), in its order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolutionError(f"{host} does not resolve: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ResolutionError(f"{host} has no address")
    return addresses


def checked_addresses(host: str, port: int) -> list[IPAddress]:
    """The addresses to connect to for this host, all of them allowed.

    A host with any refused address is refused whole: a resolver answering a public and a
    private address is how rebinding attacks start."""
    literal = host_literal(host)
    addresses = [literal] if literal is not None else resolve(host, port)
    for address in addresses:
        reason = address_refusal(address)
        if reason:
            shown = host if literal is None else host.strip("[]")
            raise BlockedAddress(f"{shown} → {reason}" if shown != str(address) else reason)
    return addresses


def url_host_refusal(host: str) -> str | None:
    """Checked when an endpoint is created (no DNS lookup: names are checked at connect time):
    why this host is refused, or None."""
    literal = host_literal(host)
    if literal is not None:
        return address_refusal(literal)
    if LOCALHOST_NAMES.match(host) and address_refusal(ipaddress.ip_address("127.0.0.1")):
        return f"{host} is a loopback name"
    return None
