"""Which endpoint URLs we accept: http(s) only; in production no loopback, private,
link-local or reserved address (SSRF), unless ``WEBHOOK_ALLOW_PRIVATE_URLS``.

The host is resolved at registration; a name that later resolves elsewhere (DNS rebinding) is
not re-checked per delivery (README, threat model)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from pact_settlement.kit.errors import UnprocessableError

__all__ = ["check_url"]


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


async def check_url(url: str, *, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnprocessableError("a webhook endpoint url is http:// or https:// with a host")
    if allow_private:
        return
    host = parts.hostname
    try:
        addresses = [host] if _is_ip(host) else await _resolve(host)
    except OSError as exc:
        raise UnprocessableError(f"the webhook host {host} does not resolve") from exc
    if not addresses or not all(_public(a) for a in addresses):
        raise UnprocessableError(
            f"the webhook host {host} is a loopback, private or reserved address "
            "(WEBHOOK_ALLOW_PRIVATE_URLS allows it)"
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
