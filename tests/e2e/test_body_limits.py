"""Issue 11, finding 8: a stranger's request body is refused while it
streams in, before authentication and before any parser, on every service.

The whole system runs as separate processes (tools.stack, as ``make run``
starts it). Each attack is a raw socket that streams a huge body, with a
Content-Length and without one (chunked), and reads the answer while it
sends. What is measured on the service's own process: its peak RSS during
the attack (/proc/<pid>/status VmHWM, reset before each attack through
clear_refs) and the largest temporary file it held open (its TMPDIR, and
every file descriptor, since Python's TemporaryFile has no name)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.web.limits import BodyLimit, BodyLimits
from tests.support.waiting import poll
from tools.stack import Ports, Stack, StackConfig, free_port

MiB = 1 << 20
ATTACK_MULTIPART = 200 * MiB
ATTACK_JSON = 100 * MiB
RSS_BOUND = 30 * MiB  # what one refused request may add to a process at its peak
TEMP_BOUND = 1 * MiB  # a stranger's body never reaches the disk (the public limit is 64 KiB)
IMPORT_LIMIT = 1 * MiB  # MAILLAGE_CONTACTS_MAX_IMPORT_BYTES for this stack: a legit import at the limit is quick
BOUNDARY = "maillage-attack"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    var = tmp_path_factory.mktemp("limits")
    running = Stack(StackConfig(var=var, ports=Ports.free()))
    for proc in running.procs:
        tmp = var / f"tmp-{proc.name}"
        tmp.mkdir()
        proc.env["TMPDIR"] = str(tmp)
    contacts = next(p for p in running.procs if p.name == "contacts")
    contacts.env["MAILLAGE_CONTACTS_MAX_IMPORT_BYTES"] = str(IMPORT_LIMIT)
    with running:
        yield running


def service(stack: Stack, name: str) -> tuple[int, int, Path]:
    """(port, pid, TMPDIR) of one service's process."""
    proc = next(p for p in stack.procs if p.name == name)
    port = getattr(stack.cfg.ports, name.replace("-", "_"))
    return port, proc.popen.pid, Path(proc.env["TMPDIR"])


# -- a raw client that streams ------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client managed to send before the answer came

    @property
    def detail(self) -> str:
        return self.body.decode(errors="replace")


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return length is not None and len(body) >= int(length.group(1))


def _parse(data: bytes) -> tuple[int | None, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = re.match(r"HTTP/1\.1 (\d{3})", lines[0]) if lines and lines[0] else None
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    return (int(status.group(1)) if status else None,
            {k.strip().lower(): v.strip() for k, v in headers.items()}, body)


def post_stream(port: int, path: str, content_type: str, prefix: bytes, total: int, *, chunked: bool,
                headers: dict[str, str] | None = None, chunk: int = 256 * 1024) -> Answer:
    """POST ``total`` bytes (``prefix`` then filler), reading the answer
    while sending: a server that answers early is heard at once, and the
    client stops sending then (as a browser would)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {content_type}",
             *(f"{k}: {v}" for k, v in (headers or {}).items()),
             "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"]
    received = bytearray()
    answered = threading.Event()

    def read() -> None:
        try:
            while not _complete(bytes(received)):
                data = sock.recv(65536)
                if not data:
                    break
                received.extend(data)
        except OSError:
            pass
        answered.set()

    reader = threading.Thread(target=read, daemon=True)
    sent = 0
    filler = b"a" * chunk
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        reader.start()
        while sent < total and not answered.is_set():
            piece = (prefix + filler)[: min(chunk, total)] if sent == 0 else filler[: min(chunk, total - sent)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
        if chunked and not answered.is_set():
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server closed the connection after its answer
        pass
    if not reader.is_alive() and not answered.is_set():
        reader.start()
    answered.wait(30)
    sock.close()
    status, hdrs, body = _parse(bytes(received))
    return Answer(status, hdrs, body, sent)


def multipart_prefix(field: str = "file") -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"contacts.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
JSON_PREFIX = b'{"code": "'


# -- watching a process ----------------------------------------------------------------------------


def vm(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) * 1024


class Watch:
    """During one attack: the process's peak RSS above where it started,
    and the largest temporary file it had (by name or by descriptor)."""

    def __init__(self, pid: int, tmpdir: Path) -> None:
        self.pid, self.tmpdir = pid, tmpdir
        self.largest_temp = 0
        self._stop = threading.Event()

    def __enter__(self) -> Watch:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS now
        self.rss_before = vm(self.pid, "VmRSS")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        fds = Path(f"/proc/{self.pid}/fd")
        while not self._stop.is_set():
            sizes = [0]
            for path in self.tmpdir.rglob("*"):
                try:
                    sizes.append(path.stat().st_size)
                except OSError:
                    pass
            for fd in os.listdir(fds):
                try:
                    target = os.readlink(fds / fd)
                    if target.startswith(str(self.tmpdir)):  # TemporaryFile: "<TMPDIR>/#123 (deleted)"
                        sizes.append(os.stat(fds / fd).st_size)
                except OSError:
                    pass
            self.largest_temp = max(self.largest_temp, *sizes)
            self._stop.wait(0.01)

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)  # whatever the request left behind is still counted
        self._stop.set()
        self._thread.join()
        self.rss_growth = vm(self.pid, "VmHWM") - self.rss_before


def attack(stack: Stack, name: str, path: str, content_type: str, prefix: bytes, total: int, *,
           chunked: bool, headers: dict[str, str] | None = None) -> tuple[Answer, Watch]:
    port, pid, tmpdir = service(stack, name)
    # the same kind of request once, small: what a first request imports or
    # caches is not what an attack costs
    post_stream(port, path, content_type, prefix, 100, chunked=chunked, headers=headers)
    with Watch(pid, tmpdir) as watch:
        started = time.monotonic()
        answer = post_stream(port, path, content_type, prefix, total, chunked=chunked, headers=headers)
        took = time.monotonic() - started
    where = (f"{name} {path} ({'chunked' if chunked else 'Content-Length'}): {answer.status} after "
             f"{answer.sent / MiB:.1f} MiB sent in {took:.1f}s, peak RSS +{watch.rss_growth / MiB:.1f} MiB, "
             f"largest temp file {watch.largest_temp / MiB:.2f} MiB")
    print(where)
    assert watch.rss_growth < RSS_BOUND, where
    assert watch.largest_temp < TEMP_BOUND, where
    assert proc_alive(stack, name), where
    return answer, watch


def proc_alive(stack: Stack, name: str) -> bool:
    return next(p for p in stack.procs if p.name == name).popen.poll() is None


def assert_too_large(answer: Answer, where: str) -> None:
    assert answer.status == 413, f"{where}: {answer.status} {answer.detail}"
    assert "request body: at most" in answer.detail, answer.detail
    assert answer.sent < 20 * MiB, f"{where}: the client could send {answer.sent / MiB:.0f} MiB before the answer"


# -- the attacks --------------------------------------------------------------------------------------

# Routes anyone may post to and that read a body: public API routes and
# the thin clients' pages (which check their session themselves, after the
# form is parsed).
PUBLIC = [
    ("contacts", "/app/import"),
    ("contacts", "/auth/redeem"),
    ("contacts", "/consent/not-a-token"),
    ("contacts", "/app/sign-in"),
    ("feed", "/console/sign-in"),
    ("feed", "/console/compose"),
]
# Routes behind a bearer token: a stranger is answered 401 before a byte
# of a chunked body is read, 413 at once when the length is declared. The
# unsubscribe link reads no body: its own refusal (400), nothing read.
UNREAD = [
    ("contacts", "/imports", 401),
    ("contacts", "/u/not-a-token", 400),
    ("feed", "/drafts", 401),
    ("matcher", "/anything", 401),
    ("dispatch-email", "/bounces", 401),
    ("dispatch-mastodon", "/anything", 401),
    ("dispatch-bluesky", "/anything", 401),
    ("dispatch-x", "/anything", 401),
]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_an_anonymous_200_mib_multipart_is_refused_as_it_streams_on_every_service(stack: Stack, chunked: bool):
    for name, path in PUBLIC:
        answer, _ = attack(stack, name, path, MULTIPART, multipart_prefix(), ATTACK_MULTIPART, chunked=chunked)
        assert_too_large(answer, f"{name} {path}")
    for name, path, unread in UNREAD:
        answer, _ = attack(stack, name, path, MULTIPART, multipart_prefix(), ATTACK_MULTIPART, chunked=chunked)
        if chunked:
            assert answer.status == unread, f"{name} {path}: {answer.status} {answer.detail}"
            assert answer.sent < 20 * MiB
        else:
            assert_too_large(answer, f"{name} {path}")


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_100_mib_json_to_auth_redeem_is_refused_with_bounded_memory(stack: Stack, chunked: bool):
    answer, watch = attack(stack, "contacts", "/auth/redeem", "application/json", JSON_PREFIX, ATTACK_JSON,
                           chunked=chunked)
    assert_too_large(answer, "/auth/redeem")
    assert answer.headers.get("connection") == "close"  # the server does not read the rest


def test_a_forged_session_cookie_earns_no_larger_limit(stack: Stack):
    """The web import page gives a signed-in volunteer the import limit: a
    cookie that does not verify is a stranger's."""
    cookie = {"Cookie": "maillage_volunteer=eyJzdWIiOiJ2b2wifQ.forged"}
    answer, _ = attack(stack, "contacts", "/app/import", MULTIPART, multipart_prefix(), ATTACK_MULTIPART,
                       chunked=True, headers=cookie)
    assert_too_large(answer, "/app/import with a forged cookie")
    assert "64 KiB" in answer.detail, answer.detail


def test_a_bearer_header_on_a_public_route_earns_no_larger_limit(stack: Stack):
    """/auth/redeem checks no token before reading its body, so a made-up
    one must not buy the signed-in limit."""
    answer, _ = attack(stack, "contacts", "/auth/redeem", "application/json", JSON_PREFIX, 2 * MiB,
                       chunked=True, headers={"Authorization": "Bearer made-up"})
    assert_too_large(answer, "/auth/redeem with a made-up bearer token")
    assert "64 KiB" in answer.detail, answer.detail


# -- what a signed-in caller may still do ----------------------------------------------------------


def signed_in_volunteer(base: str) -> str:
    admin = {"Authorization": f"Bearer {StackConfig.provisioning_token}"}
    with httpx.Client(base_url=base, timeout=30) as http:
        invite = http.post("/admin/invites", headers=admin,
                           json={"display_name": "Alice Limite", "email": f"alice.{time.time_ns()}@benevoles.example"})
        assert invite.status_code == 201, invite.text
        redeemed = http.post("/auth/redeem", json={"code": invite.json()["code"]})
        assert redeemed.status_code == 200, redeemed.text
        return redeemed.json()["token"]


def csv_of_exactly(size: int) -> tuple[bytes, int]:
    """A Google CSV of exactly ``size`` bytes, and how many rows it has:
    notes of 3,000 characters keep the row count (and the import) small."""
    header = b"Name,E-mail 1 - Value,Notes\n"
    rows, body = 0, bytearray(header)
    while True:
        row = f"Personne {rows},personne{rows}@exemple.fr,".encode()
        left = size - len(body) - len(row) - 1
        if left <= 3000 + 100:
            body += row + b"n" * left + b"\n"
            return bytes(body), rows + 1
        body += row + b"n" * 3000 + b"\n"
        rows += 1


def test_a_legit_import_at_the_import_limit_still_works(stack: Stack):
    port, pid, tmpdir = service(stack, "contacts")
    base = f"http://127.0.0.1:{port}"
    token = signed_in_volunteer(base)
    auth = {"Authorization": f"Bearer {token}"}
    content, rows = csv_of_exactly(IMPORT_LIMIT)
    assert len(content) == IMPORT_LIMIT
    with httpx.Client(base_url=base, timeout=60) as http, Watch(pid, tmpdir) as legit:
        r = http.post("/imports", headers=auth, files={"file": ("contacts.csv", content, "text/csv")})
        assert r.status_code == 202, r.text
        done = poll(lambda: http.get(f"/imports/{r.json()['id']}", headers=auth).json(),
                    lambda s: s["status"] != "running", what="the import at the limit")
        assert (done["status"], done["rows"], done["imported"]) == ("done", rows, rows), done
    # the watch sees the file the import keeps while it runs: it would see a spooled attack
    assert legit.largest_temp == IMPORT_LIMIT, legit.largest_temp

    with httpx.Client(base_url=base, timeout=60) as http:

        # one byte more: the route's own answer, which says what to do
        r = http.post("/imports", headers=auth, files={"file": ("contacts.csv", content + b"x", "text/csv")})
        assert r.status_code == 413 and "split" in r.json()["detail"], r.text

    # far more, streamed: refused by the limit once past the import limit,
    # the process never holding or spooling much more than the limit
    with Watch(pid, tmpdir) as watch:
        answer = post_stream(port, "/imports", MULTIPART, multipart_prefix(), ATTACK_MULTIPART, chunked=True,
                             headers=auth)
    assert_too_large(answer, "a signed-in 200 MiB import")
    assert f"({IMPORT_LIMIT + 64 * 1024} bytes)" in answer.detail, answer.detail  # import limit + multipart
    assert watch.largest_temp <= IMPORT_LIMIT + 64 * 1024, watch.largest_temp  # spooled: what it was let read
    assert watch.rss_growth < RSS_BOUND, watch.rss_growth


def test_a_signed_in_volunteer_imports_through_the_web_page(stack: Stack):
    """The web page's upload gets the import limit once the session cookie
    verifies: a file at the limit goes through."""
    port, _, _ = service(stack, "contacts")
    base = f"http://127.0.0.1:{port}"
    token = signed_in_volunteer(base)
    content, rows = csv_of_exactly(IMPORT_LIMIT)
    with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as browser:
        page = browser.get("/app/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = browser.post("/app/sign-in", data={"token": token, "csrf": csrf})
        assert r.status_code == 303, r.text
        page = browser.get("/app/import")
        assert page.status_code == 200, page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = browser.post("/app/import", data={"csrf": csrf}, files={"file": ("contacts.csv", content, "text/csv")})
        assert r.status_code == 303, r.text
        report = r.headers["location"]
        status = poll(lambda: browser.get(f"{report}/status").json(), lambda s: s["status"] != "running",
                      what="the web import")
        assert (status["status"], status["imported"]) == ("done", rows), status


def test_bounces_take_a_dsn_up_to_its_limit_and_not_more(stack: Stack):
    port, _, _ = service(stack, "dispatch-email")
    auth = {"Authorization": f"Bearer {StackConfig.bounce_token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        r = http.post("/bounces", headers=auth, content=b"x" * MiB)  # read whole, then judged
        assert r.status_code == 422 and "not a delivery status notification" in r.text, r.text
    answer, _ = attack(stack, "dispatch-email", "/bounces", "message/rfc822", b"", ATTACK_MULTIPART, chunked=True,
                       headers=auth)
    assert_too_large(answer, "/bounces")


# -- the middleware's own promises, in process ------------------------------------------------------


def test_the_413_stands_whatever_the_route_does_with_the_error():
    """A route that swallows every error (here: a 400 of its own) or a
    parser that wraps ours still answers the one 413, with nothing past the
    limit read. uvicorn on a port, the raw client above."""
    app = FastAPI()
    seen: list[int] = []

    @app.post("/swallow")
    async def swallow(request: Request):
        try:
            seen.append(len(await request.body()))
        except Exception:
            return JSONResponse({"detail": "something else"}, status_code=400)
        return {"read": seen[-1]}

    app.add_middleware(BodyLimit, limits=BodyLimits(public=1000, signed_in=5000, routes={"/swallow": 3000}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    poll(lambda: server.started, bool, timeout=10, what="uvicorn")
    try:
        for chunked in (True, False):
            small = post_stream(port, "/swallow", "text/plain", b"", 1000, chunked=chunked)
            assert (small.status, small.detail) == (200, '{"read":1000}')
            big = post_stream(port, "/swallow", "text/plain", b"", 1001, chunked=chunked, chunk=100)
            assert big.status == 413 and "at most 1000 bytes" in big.detail, big
            # a credential buys the route's limit; the route's, not the signed-in one
            bearer = {"Authorization": "Bearer anything"}
            assert post_stream(port, "/swallow", "text/plain", b"", 3000, chunked=chunked, headers=bearer).status == 200
            over = post_stream(port, "/swallow", "text/plain", b"", 3001, chunked=chunked, headers=bearer, chunk=100)
            assert over.status == 413 and "at most 2.93 KiB (3000 bytes)" in over.detail, over
        assert max(seen) <= 3000
    finally:
        server.should_exit = True
        thread.join(10)
