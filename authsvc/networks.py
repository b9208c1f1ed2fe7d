"""The network a login attempt counts against: one budget per client network.

IPv4 is counted per address. IPv6 is counted per prefix (``AUTHSVC_LOGIN_IPV6_PREFIX``,
default /64), because one end site usually holds a whole /64: counted per address, one
site could guess without limit. The IPv6 forms that carry an IPv4 address are counted
as that IPv4 address, exactly as if it had connected over IPv4: a /64 of them holds a
whole IPv4 population (every client of a NAT64/SIIT translator, one per 6to4 site ...),
which per /64 would share one budget and one "known network", while one IPv4 client
could switch between its plain and embedded forms to get fresh budgets.
"""

from __future__ import annotations

import ipaddress

# RFC 6052 well-known NAT64 prefix: the IPv4 address is the last 32 bits. (The
# local-use 64:ff9b:1::/48 of RFC 8215 puts it where the operator's prefix length
# says, which this service cannot know: such addresses are grouped per IPv6 prefix.)
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 client an IPv6 address stands for, or None for a native IPv6 address.

    IPv4-mapped (``::ffff:0:0/96``), NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``: the
    site's IPv4 address, bits 16-47) and Teredo (``2001::/32``: the client's public
    IPv4 address, stored as the bitwise NOT of the last 32 bits).
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client), the client already un-negated
    return None


def login_network(ip: str, ipv6_prefix: int) -> str:
    """The network a login throttle counts ``ip`` in: IPv4 per address, IPv6 per prefix.

    An IPv6 address that embeds an IPv4 address (:func:`embedded_ipv4`) is that IPv4
    address, spelled the same, so both forms of one client share one budget.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]  # not an address (a proxy's odd header): still one bounded key
    if isinstance(address, ipaddress.IPv6Address):
        ipv4 = embedded_ipv4(address)
        if ipv4 is None:
            return str(ipaddress.IPv6Network((int(address), ipv6_prefix), strict=False))
        address = ipv4
    return str(address)
