"""make bench-email: N email jobs through one dispatcher replica into an
SMTP sink, next to a raw aiosmtplib loop into the same sink.

The bench starts its own nats-server (JetStream, a temporary directory) and
an aiosmtpd sink in another process (it counts messages and stamps the
first and last; it parses nothing). Then, in the same run:

1. raw: an aiosmtplib loop with as many persistent connections as the
   dispatcher's pool sends N ready-made emails of the dispatcher's size
   (composed by the same code, so the sink's work per message is the same);
2. end to end: one dispatcher replica (``python -m services.dispatch email``,
   its own process, its real ledger on SQLite) is started and ready; N jobs
   are published as contacts publishes them; the clock runs from the first
   publish to the sink's receipt of the N-th email.

3. floor: the JetStream share of a dispatcher's work alone, by raw nats-py
   in this process: pull the N jobs (batches of 256), ack each, publish one
   small result each with ``publish_async``; no parsing, no SMTP. Its CPU
   per job plus the raw loop's CPU per email is what any dispatcher in
   Python spends at least, which bounds the ratio on a small machine.

Prints both rates and their ratio. ``--recipients`` (or BENCH_EMAILS) sets N,
``--pool`` the connections (dispatcher's ``SMTP_POOL_SIZE``), ``--profile FILE``
has py-spy sample the dispatcher during the end-to-end run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib
import httpx
import nats
from pydantic import SecretStr

from shared.messaging import Bus
from shared.catalogue import CONTACTS, DISPATCH_JOBS_STREAM, EMAIL_JOB, EMAIL_RESULT
from shared.events import Channel, EmailJob, OpenedEmailJob
from shared.sealed import TransitSealer, seal_email
from tools.stack import free_port, nats_server_binary, wait_for_port
from tools.streams import apply as apply_streams

ROOT = Path(__file__).resolve().parent.parent
FROM = "relais@campagne.example"
BODY = ("La fermeture de la classe de CM2 est annoncée pour la rentrée. **Réunion publique jeudi 19 h** "
        "à l'école Jules-Ferry : venez avec vos questions, les élus seront là.\n\n") * 4


# the email channel's transit key of this run: the bench seals as contacts does, the dispatcher opens
TRANSIT_KEY = base64.b64encode(os.urandom(32)).decode()
SEALER = TransitSealer.from_secret(Channel.email, SecretStr(TRANSIT_KEY))


def jobs(n: int, prefix: str) -> list[OpenedEmailJob]:
    """Jobs as contacts builds them (and the dispatcher reads them once opened)."""
    return [OpenedEmailJob(
        job_id=f"{prefix}-{i}", relay_id=f"{prefix}-relay", message_id="bench-message", volunteer_id=f"vol-{i % 50}",
        sender_name="Alice Martin", reply_to="alice.martin@perso.example",
        recipient_name=f"Camille Dupont{i}", recipient_email=f"camille{i}@exemple.fr",
        recipient_hash=f"{i:064x}", subject="Les écoles ont besoin de vous", body_text=BODY,
        unsubscribe_url=f"https://campagne.example/u/{prefix}-{i}", note="Je pense que ça t'intéresse !",
    ) for i in range(n)]


def sealed_jobs(n: int, prefix: str) -> list[EmailJob]:
    """The same jobs as NATS carries them, sealed before any clock starts (contacts' work, not the dispatcher's)."""
    return [seal_email(j, SEALER) for j in jobs(n, prefix)]


# -- the sink (its own process) ------------------------------------------------------------------


class CountingSink:
    """Counts messages; ``expect N`` on stdin arms it, it answers
    ``done <first> <last>`` (wall-clock times) on stdout at the N-th."""

    def __init__(self) -> None:
        self.count, self.first, self.last = 0, 0.0, 0.0
        self.expected: int | None = None

    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        self.count += 1
        if self.count == 1:
            self.first = now
        self.last = now
        if self.expected is not None and self.count >= self.expected:
            print(f"done {self.first} {self.last}", flush=True)
            self.expected = None
        return "250 OK"


async def run_sink(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    sink = CountingSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, hostname="sink"), "127.0.0.1", port)
    print("ready", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "expect":
            sink.count, sink.expected = 0, int(line[1])
    server.close()


class Sink:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.email_bench", "--sink", str(port)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None  # both are pipes
        self.stdin, self.stdout = stdin, stdout
        assert self.stdout.readline().strip() == "ready"

    def expect(self, n: int) -> None:
        self.stdin.write(f"expect {n}\n")
        self.stdin.flush()

    async def done(self) -> tuple[float, float]:
        line = await asyncio.to_thread(self.stdout.readline)
        _, first, last = line.split()
        return float(first), float(last)

    def stop(self) -> None:
        self.stdin.close()
        self.proc.wait(10)


# -- the two runs --------------------------------------------------------------------------------------


async def raw_loop(sink: Sink, n: int, pool: int) -> tuple[float, dict[str, float]]:
    """The baseline: ``pool`` persistent aiosmtplib connections, each
    sending its share of N ready-made messages one after the other."""
    from services.dispatch.email.domain.message import compose, wire

    messages = [(str(j.recipient_email), wire(compose(j, FROM, "relais.campagne.example"))) for j in jobs(n, "raw")]
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port) for _ in range(pool)]
    for client in clients:
        await client.connect()
    sink.expect(n)
    started, cpu_before, sink_before = time.time(), time.process_time(), cpu_seconds(sink.proc.pid)

    async def worker(client: aiosmtplib.SMTP, share: list[tuple[str, bytes]]) -> None:
        for rcpt, data in share:
            await client.sendmail(FROM, [rcpt], data)

    await asyncio.gather(*(worker(c, messages[i::pool]) for i, c in enumerate(clients)))
    _, last = await sink.done()
    took = last - started
    busy = {"client": (time.process_time() - cpu_before) / took, "sink": (cpu_seconds(sink.proc.pid) - sink_before) / took}
    for client in clients:
        await client.quit()
    return n / took, busy


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profiler(pid: int, out: Path | None) -> subprocess.Popen | None:
    """py-spy sampling the dispatcher during the end-to-end run only (its
    start-up imports would drown the profile), raw stacks to ``out``; only
    samples holding the GIL, so waiting in epoll does not pass for work."""
    if out is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--gil",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def end_to_end(sink: Sink, nats_url: str, n: int, pool: int, tmp: Path,
                     nats_pid: int, profile: Path | None = None) -> tuple[float, float, dict[str, float]]:
    http_port = free_port()
    env = {**os.environ, "MAILLAGE_NATS_URL": nats_url, "MAILLAGE_LOG_LEVEL": "WARNING",
           "MAILLAGE_DISPATCH_EMAIL_HTTP_PORT": str(http_port), "MAILLAGE_DISPATCH_EMAIL_FROM_ADDRESS": FROM,
           "MAILLAGE_DISPATCH_EMAIL_SMTP_PORT": str(sink.port), "MAILLAGE_DISPATCH_EMAIL_SMTP_POOL_SIZE": str(pool),
           "MAILLAGE_DISPATCH_EMAIL_LEDGER_URL": f"sqlite:///{tmp / 'ledger.db'}",
           "MAILLAGE_DISPATCH_EMAIL_RATE_PER_SECOND": "0", "MAILLAGE_DISPATCH_EMAIL_VOLUNTEER_RATE_PER_HOUR": "0",
           "MAILLAGE_DISPATCH_EMAIL_TRANSIT_KEY": TRANSIT_KEY}
    log = open(tmp / "dispatch.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "services.dispatch", "email"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(f"http://127.0.0.1:{http_port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"dispatcher not ready: see {tmp / 'dispatch.log'}")
        contacts = Bus(CONTACTS, nats_url)
        await contacts.connect()
        batch = sealed_jobs(n, "e2e")
        spy = profiler(proc.pid, profile)
        sink.expect(n)
        pids = {"dispatcher": proc.pid, "sink": sink.proc.pid, "nats-server": nats_pid}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.time()
        await contacts.publish_many(EMAIL_JOB, ((j, (), j.job_id) for j in batch))
        published = time.time() - started
        _, last = await sink.done()
        busy = {name: (cpu_seconds(pid) - cpu_before[name]) / (last - started) for name, pid in pids.items()}
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        await contacts.stop()
        return n / (last - started), published, busy
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


async def jetstream_floor(nats_url: str, n: int) -> tuple[float, float]:
    """(jobs/s, CPU ms per job) of pulling, acking and answering N jobs with
    raw nats-py: the JetStream work no dispatcher can skip."""
    contacts = Bus(CONTACTS, nats_url)
    await contacts.connect()
    await contacts.publish_many(EMAIL_JOB, ((j, (), j.job_id) for j in sealed_jobs(n, "floor")))
    await contacts.stop()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    # a work-queue stream takes one consumer per subject: the dispatcher's goes
    await js.delete_consumer(DISPATCH_JOBS_STREAM.name, "dispatch-email")
    sub = await js.pull_subscribe(EMAIL_JOB.pattern, durable="bench-floor", stream=DISPATCH_JOBS_STREAM.name)
    result = b'{"job_id":"x","status":"delivered"}'
    started, cpu_before, done, acks = time.perf_counter(), time.process_time(), 0, []
    while done < n:
        for msg in await sub.fetch(256, timeout=5):
            await msg.ack()
            acks.append(await js.publish_async(EMAIL_RESULT.pattern, result, headers={"Nats-Msg-Id": f"r{done}"}))
            done += 1
    await asyncio.gather(*acks)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    await nc.close()
    return n / took, 1000 * cpu / n


async def run(n: int, pool: int, tmp: Path, profile: Path | None = None) -> None:
    nats_port, smtp_port = free_port(), free_port()
    server = subprocess.Popen([nats_server_binary(), "-a", "127.0.0.1", "-p", str(nats_port), "-js",
                               "-sd", str(tmp / "nats")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sink = None
    try:
        wait_for_port(nats_port, 10)
        await apply_streams(f"nats://127.0.0.1:{nats_port}")  # the streams step: services never declare one
        sink = Sink(smtp_port)
        raw, raw_busy = await raw_loop(sink, n, pool)
        e2e, published, busy = await end_to_end(sink, f"nats://127.0.0.1:{nats_port}", n, pool, tmp, server.pid,
                                                 profile)
        floor_rate, floor_ms = await jetstream_floor(f"nats://127.0.0.1:{nats_port}", n)
    finally:
        if sink:
            sink.stop()
        server.terminate()
        server.wait(10)
    print(f"\n{n:,} emails, {pool} SMTP connections, sink in its own process (aiosmtpd)")
    print(f"  raw aiosmtplib loop:            {raw:8,.0f} emails/s")
    print("    CPU meanwhile, share of one core: " + ", ".join(f"{k} {v:.0%}" for k, v in raw_busy.items()))
    print(f"  dispatcher end to end:          {e2e:8,.0f} emails/s  (jobs published in {published:.2f} s)")
    print("    CPU meanwhile, share of one core: " + ", ".join(f"{k} {v:.0%}" for k, v in busy.items()))
    print(f"  ratio:                          {e2e / raw:8.2f}")
    smtp_ms = 1000 * raw_busy["client"] / raw
    print(f"  floor, JetStream alone (raw nats-py pull + ack + result): {floor_rate:,.0f} jobs/s, "
          f"{floor_ms:.2f} ms CPU a job")
    print(f"  per email, at least: {smtp_ms:.2f} ms SMTP client + {floor_ms:.2f} ms JetStream = "
          f"{smtp_ms + floor_ms:.2f} ms CPU; the dispatcher spent {1000 * busy['dispatcher'] / e2e:.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.email_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=int(os.environ.get("BENCH_EMAILS", 5000)))
    parser.add_argument("--pool", type=int, default=4, help="SMTP connections, both runs")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="py-spy the dispatcher during the end-to-end run (raw stacks; py-spy on PATH)")
    parser.add_argument("--sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        asyncio.run(run_sink(args.sink))
        return
    with tempfile.TemporaryDirectory(prefix="maillage-bench-email-") as tmp:
        asyncio.run(run(args.recipients, args.pool, Path(tmp), args.profile))


if __name__ == "__main__":
    main()
