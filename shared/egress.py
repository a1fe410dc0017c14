"""One egress policy for every address a volunteer supplies (a Mastodon
instance, a Bluesky PDS, their own SMTP server; any later sync server).

A volunteer's address is aimed from inside our network, with our
credentials' shape around it: without a policy it reaches loopback
services, NATS, PostgreSQL, a cloud metadata endpoint. So, at input and
again at every connection:

- https only (SMTP: starttls or tls), plain text only to an allow-listed
  host:port;
- the origin only: no user, path, query or fragment is taken, and the
  adapters build every URL from the origin;
- a name is resolved once, and refused when ANY of its addresses is not a
  public unicast address (loopback, private, link-local, multicast,
  reserved, unspecified, shared 100.64/10, the IPv4-mapped / -compatible /
  6to4 / NAT64 forms of those, cloud metadata);
- the connection goes to the address that was checked, never through a
  second lookup (DNS rebinding): httpx through ``PinnedTransport``, SMTP
  through ``connect_socket``; TLS still verifies the certificate for the
  name (SNI and hostname check use the name, not the address).

``MAILLAGE_EGRESS_ALLOW`` ("127.0.0.1:8443,localhost:2525", empty by
default) lists the exact host:port pairs exempt from the address rules,
for local development and the tests' fake servers: the exemption is
spelled out, never a hole in the rules."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx
from prometheus_client import Counter

from shared.outcomes import OutcomeKind

REASON = OutcomeKind.egress_refused.value  # the failure a job reports when its address fails the policy
DEFAULT_PORTS = {"https": 443, "http": 80}
RESOLVE_TIMEOUT = 5.0
POOL_LIMITS = httpx.Limits()  # httpx's own default, built once

REFUSED = Counter("maillage_egress_refused_total",
                  "Connections to a volunteer-supplied address refused by the egress policy, by rule.", ["rule"])

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# scheme://authority, then at most a lone "/": anything else (user, path,
# query, fragment, backslash, space) is refused by construction
_ORIGIN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#@\\\s]+)/?")
_AUTHORITY = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
             ipaddress.ip_address("100.100.100.200")}


class EgressRefused(Exception):
    """An address the policy refuses; ``rule`` is a metric label, the message
    a sentence for the volunteer (never the resolved addresses)."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


# -- addresses --------------------------------------------------------------------------------


def refused_address(ip: Address) -> str | None:
    """Why this address may not be reached, or None for a public unicast address."""
    if ip in _METADATA:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return refused_address(ip.ipv4_mapped)
        if ip in _IPV4_COMPATIBLE:  # ::, ::1 and the deprecated ::a.b.c.d
            return "an unspecified, loopback or IPv4-compatible address"
        if ip in _NAT64_LOCAL:
            return "a local NAT64 address"
        if ip in _NAT64:
            return refused_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and (why := refused_address(ip.sixtofour)):
            return why
        if ip.teredo is not None:
            return "a Teredo address"
        if ip.is_site_local:
            return "a site-local address"
    for test, why in ((ip.is_loopback, "a loopback address"), (ip.is_unspecified, "an unspecified address"),
                      (ip.is_link_local, "a link-local address"), (ip.is_multicast, "a multicast address"),
                      (ip in _SHARED, "a shared (carrier-grade NAT) address"),
                      (ip.is_private, "a private address"), (ip.is_reserved, "a reserved address")):
        if test:
            return why
    return None if ip.is_global else "not a public address"


def canonical_host(host: str) -> str:
    """The host as it will be connected to: lower case, IDNA, no trailing
    dot; an address in its one standard spelling. Raises ValueError."""
    host = host.strip().lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise ValueError("has no host")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("is not a valid host name") from None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("is not a valid host name")
    # A last label that is not a word is an address spelt another way
    # (2130706433, 0x7f000001, 0177.0.0.1, 127.1): resolvers would read it as
    # 127.0.0.1; only the standard dotted form is taken for an address.
    if not labels[-1][0].isalpha():
        raise ValueError("spells an address in a non-standard form: write it as a.b.c.d, or use a name")
    return ascii_host


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")  # RFC 6761: always loopback


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str  # canonical_host
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS.get(self.scheme) == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def origin(url: str) -> Origin:
    """The origin of ``url``, refusing anything more (shape only, no DNS).
    Raises ValueError with a sentence naming what to remove."""
    url = url.strip()
    found = _ORIGIN.fullmatch(url)
    if found is None:
        parts = urlsplit(url) if "://" in url else None
        if parts is None:
            raise ValueError("must be an address like https://mastodon.social")
        if "@" in parts.netloc:
            raise ValueError("must not contain a user name or password (…@)")
        if parts.query or parts.fragment or "?" in url or "#" in url:
            raise ValueError("must be the server's origin only: no query or fragment")
        raise ValueError("must be the server's origin only, e.g. https://mastodon.social: no path")
    scheme = found["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("must start with https://")
    authority = _AUTHORITY.fullmatch(found["authority"])
    if authority is None:
        raise ValueError("has a malformed host or port")
    if authority["v6"] is not None and not isinstance(_literal(authority["v6"]), ipaddress.IPv6Address):
        raise ValueError("has a malformed IPv6 address")
    host = canonical_host(authority["v6"] or authority["host"])
    port = int(authority["port"]) if authority["port"] else DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise ValueError("has a port outside 1-65535")
    return Origin(scheme, host, port)


def origin_text(url: str) -> str:
    """A pydantic ``AfterValidator``: the origin, as the one string stored."""
    return origin(url).url


def parse_allow(text: str | Iterable[str]) -> frozenset[tuple[str, int]]:
    """``"127.0.0.1:8443,localhost:2525,[::1]:25"`` → {(host, port)}; ValueError on a malformed entry."""
    entries = [e.strip() for e in (text.split(",") if isinstance(text, str) else text)]
    allowed = set()
    for entry in filter(None, entries):
        found = _AUTHORITY.fullmatch(entry)
        if found is None or found["port"] is None:
            raise ValueError(f"egress allow-list entry {entry!r} is not host:port")
        allowed.add((canonical_host(found["v6"] or found["host"]), int(found["port"])))
    return frozenset(allowed)


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                   RESOLVE_TIMEOUT)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class EgressPolicy:
    def __init__(self, allow: str | Iterable[str] = "", resolver: Resolver = system_resolve) -> None:
        self.allow = parse_allow(allow)
        self.resolver = resolver

    @classmethod
    def of(cls, common) -> EgressPolicy:
        """The policy of a service's ``CommonSettings`` (``MAILLAGE_EGRESS_ALLOW``)."""
        return cls(getattr(common, "egress_allow", "") or "")

    def allowed(self, host: str, port: int) -> bool:
        return (host, port) in self.allow

    def _refuse(self, message: str, rule: str) -> EgressRefused:
        REFUSED.labels(rule).inc()
        return EgressRefused(message, rule)

    def check_origin(self, url: str) -> Origin:
        """The origin to connect to, or EgressRefused: shape, scheme, a literal
        address's range (no DNS; the connection resolves and checks)."""
        try:
            found = origin(url)
        except ValueError as exc:
            raise self._refuse(str(exc), "shape") from None
        if found.scheme != "https" and not self.allowed(found.host, found.port):
            raise self._refuse("must start with https://", "scheme")
        self._check_literal(found.host, found.port)
        return found

    def check_smtp(self, host: str, port: int, security: str) -> str:
        """The canonical SMTP host, or EgressRefused: shape, TLS, a literal address's range."""
        try:
            host = canonical_host(host)
        except ValueError as exc:
            raise self._refuse(str(exc), "shape") from None
        if security not in ("starttls", "tls") and not self.allowed(host, port):
            raise self._refuse("must be starttls or tls: the password would cross the network in clear", "scheme")
        self._check_literal(host, port)
        return host

    def _check_literal(self, host: str, port: int) -> None:
        if self.allowed(host, port):
            return
        if _local_name(host):
            raise self._refuse("is this machine (localhost), which is never reached", "address")
        ip = _literal(host)
        if ip is not None and (why := refused_address(ip)):
            raise self._refuse(f"is {why}, which is never reached", "address")

    async def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to, from one lookup: the caller
        connects to these, never to the name. Raises EgressRefused, or
        OSError when the name does not resolve (a network failure: retried)."""
        try:
            host = canonical_host(host)
        except ValueError as exc:
            raise self._refuse(str(exc), "shape") from None
        self._check_literal(host, port)
        if (ip := _literal(host)) is not None:
            return [str(ip)]
        try:
            found = await self.resolver(host, port)
        except asyncio.TimeoutError:
            raise socket.gaierror(socket.EAI_AGAIN, "name resolution timed out") from None
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "no address")
        checked = []
        for raw in found:
            ip = ipaddress.ip_address(raw.split("%", 1)[0])
            if not self.allowed(host, port) and (why := refused_address(ip)):
                # one bad address refuses the name: a resolver's order is the attacker's to choose
                raise self._refuse(f"resolves to {why}, which is never reached", "address")
            checked.append(str(ip))
        return checked

    async def check_input(self, host: str, port: int) -> None:
        """At input (contacts): refuse what is known bad now; a name that does
        not resolve yet passes, the dispatcher checks again at each connection."""
        try:
            await self.addresses(host, port)
        except OSError:
            pass


# -- HTTP: a transport that connects to the checked address -----------------------------------


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore asks it for a TCP stream to (name, port): it connects to a
    checked address of that name instead. httpcore then starts TLS with the
    name as server_hostname, so SNI and the certificate check keep the name."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.addresses(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"name resolution failed: {exc.strerror or exc}") from None
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last  # type: ignore[misc]

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise EgressRefused("a unix socket is never reached", "address")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy, *, verify: ssl.SSLContext | bool = True,
                 limits: httpx.Limits = POOL_LIMITS) -> None:
        super().__init__(verify=verify, limits=limits)
        self.policy = policy
        # httpx builds its pool without a network backend parameter: the same
        # pool, with the pinned backend, replaces it
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify) if not isinstance(verify, ssl.SSLContext) else verify,
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_PinnedBackend(policy))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.userinfo or (url.scheme != "https" and not self.policy.allowed(url.host, url.port or 80)):
            raise self.policy._refuse("only https to the origin is reached", "scheme")
        return await super().handle_async_request(request)


class PinnedClient(httpx.AsyncClient):
    """An httpx client whose every connection passes the policy (adapters refuse any other)."""

    def __init__(self, policy: EgressPolicy, *, verify: ssl.SSLContext | bool = True, **kwargs) -> None:
        kwargs.setdefault("follow_redirects", False)  # a redirect would be a second, unchecked origin
        # trust_env off: an HTTP(S)_PROXY variable would move the connection to the proxy, unchecked
        super().__init__(transport=PinnedTransport(policy, verify=verify), trust_env=False, **kwargs)
        self.egress = policy


def require_pinned(http: httpx.AsyncClient) -> EgressPolicy:
    """The policy of a client built by ``PinnedClient``; TypeError for any other
    client, so no adapter can be wired to an unchecked one."""
    if not isinstance(http, PinnedClient) or http.follow_redirects:
        raise TypeError("volunteer-supplied addresses need a shared.egress.PinnedClient (no redirects)")
    return http.egress


# -- SMTP: a socket connected to the checked address --------------------------------------------


async def connect_socket(policy: EgressPolicy, host: str, port: int, timeout: float) -> socket.socket:
    """A connected, non-blocking socket to a checked address of ``host``: give
    it to aiosmtplib as ``sock`` with ``hostname=host``, so TLS verifies the name."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for address in await asyncio.wait_for(policy.addresses(host, port), timeout):
        ip = ipaddress.ip_address(address)
        sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (address, port)), timeout)
            return sock
        except (OSError, asyncio.TimeoutError) as exc:
            sock.close()
            last = exc if isinstance(exc, OSError) else TimeoutError(f"connecting to port {port} timed out")
    raise last or OSError("no address to connect to")
