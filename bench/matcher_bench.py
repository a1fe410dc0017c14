"""make bench-matcher: index N volunteer profiles, match one broad-ish
message, publish all its suggestions to JetStream — next to a raw baseline.

The bench starts its own nats-server (JetStream, a temporary directory),
loads N generated profiles into the PROFILES stream (concurrently, with raw
``publish_async``: loading is not what is measured), then starts the matcher
as its own process (``python -m services.matcher``, as in production) and
measures:

- time to index: process start until ``/readyz`` says ready (imports, the
  PROFILES replay into the index, the FEED rebuild);
- time to match and publish: one message published on ``feed.messages.published``
  until the SUGGESTIONS stream holds every suggestion the rules give (the
  count is computed by the same pure index in this process, so the figure is
  also a correctness check); the matcher's own log gives the matching part;
- suggestions/s, and the same number of messages of the same size published
  by a raw nats-py ``js.publish_async`` loop (with ``Nats-Msg-Id``) into a
  scratch stream of the same server in the same run, as a ratio;
- the matcher's resident memory (VmRSS, and its peak VmHWM) once indexed and
  after the message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
from nats.js.api import StreamConfig

from services.matcher.domain import ProfileIndex
from shared.messaging import Bus
from shared.catalogue import CONTACTS, FEED, MESSAGE_PUBLISHED, PROFILES_STREAM, SUGGESTIONS_STREAM
from shared.events import InterestProfile, MessagePublished, Variants
from tools.stack import free_port, nats_server_binary, wait_for_port
from tools.streams import apply as apply_streams

ROOT = Path(__file__).resolve().parent.parent
INTERESTS = ["education", "transport", "seniors", "health", "housing", "environment", "culture", "security",
             "local:lyon", "local:rennes"]
WEIGHTS = [10, 9, 7, 7, 6, 5, 4, 3, 1, 1]
REGIONS = ["idf", "ara", "bretagne", "occitanie", "naq", "hdf", "grand-est", "paca", "normandie",
           "pdl", "bfc", "cvl", "corse"]
MESSAGE = MessagePublished(
    message_id="bench-message", title="Réunion publique", body="Venez nombreux.",
    interests=("education", "transport", "health"), priority=2,
    variants=Variants.model_validate({"email": {"subject": "Réunion publique", "body": "Venez nombreux."}}),
)


def profiles(n: int, seed: int = 4) -> list[InterestProfile]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        interests = set(rng.choices(INTERESTS, WEIGHTS, k=rng.randint(1, 3)))
        regions = rng.sample(REGIONS, rng.randint(1, 2))
        out.append(InterestProfile(
            volunteer_id=f"vol-{i:06d}",
            audience={name: {"email": rng.randint(1, 60)} for name in interests},
            regions={r: rng.randint(1, 40) for r in regions},
            locales={"fr": rng.randint(1, 60)} | ({"en": rng.randint(1, 5)} if rng.random() < 0.1 else {}),
        ))
    return out


async def publish_raw(js, items: list[tuple[str, bytes, str]]) -> float:
    """(subject, payload, msg id) with publish_async; seconds until every ack."""
    started = time.perf_counter()
    futures = [await js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id})
               for subject, payload, msg_id in items]
    await asyncio.gather(*futures)
    return time.perf_counter() - started


def rss(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found


def matched_log(log: Path) -> dict:
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "message.matched":
            return record
    return {}


async def stored(js, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def run(volunteers: int, tmp: Path) -> None:
    port = free_port()
    server = subprocess.Popen([nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js",
                               "-sd", str(tmp / "nats")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    matcher = None
    try:
        wait_for_port(port, 10)
        url = f"nats://127.0.0.1:{port}"
        await apply_streams(url)  # the deployment's streams step: services never declare one
        contacts = Bus(CONTACTS, url)
        await contacts.connect()
        feed = Bus(FEED, url)
        await feed.connect()
        nc = await nats.connect(url)
        js = nc.jetstream(timeout=30)

        generated = profiles(volunteers)
        started = time.perf_counter()
        await publish_raw(js, [(PROFILES_STREAM.subjects[0].replace("*", p.volunteer_id),
                                p.model_dump_json().encode(), p.event_id) for p in generated])
        print(f"{volunteers:,} profiles loaded into PROFILES in {time.perf_counter() - started:.1f} s")
        index = ProfileIndex()
        for p in generated:
            index.upsert(p)
        expected = len(index.match(MESSAGE))
        del index, generated

        http_port = free_port()
        env = {**os.environ, "MAILLAGE_NATS_URL": url, "MAILLAGE_MATCHER_HTTP_PORT": str(http_port),
               "MAILLAGE_LOG_FORMAT": "json", "MAILLAGE_MATCHER_QUIET_START": "0",
               "MAILLAGE_MATCHER_QUIET_END": "0", "PYTHONUNBUFFERED": "1"}
        log = tmp / "matcher.log"
        started = time.perf_counter()
        with log.open("wb") as out:
            matcher = subprocess.Popen([sys.executable, "-m", "services.matcher"], cwd=ROOT, env=env,
                                       stdout=out, stderr=subprocess.STDOUT)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:
            while True:
                if matcher.poll() is not None:
                    raise RuntimeError(f"the matcher exited ({matcher.returncode}): see {log}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        index_s = time.perf_counter() - started
        rss_indexed = rss(matcher.pid)
        print(f"matcher ready (profiles indexed) in {index_s:.1f} s, RSS {rss_indexed['VmRSS'] / 1e6:.0f} MB")

        started = time.perf_counter()
        await feed.publish(MESSAGE_PUBLISHED, MESSAGE, msg_id=MESSAGE.message_id)
        while await stored(js, SUGGESTIONS_STREAM.name) < expected:
            if matcher.poll() is not None:
                raise RuntimeError(f"the matcher exited ({matcher.returncode}): see {log}")
            await asyncio.sleep(0.02)
        match_s = time.perf_counter() - started
        await asyncio.sleep(0.5)
        count = await stored(js, SUGGESTIONS_STREAM.name)
        assert count == expected, f"{count} suggestions stored, {expected} expected"
        rss_after = rss(matcher.pid)
        record = matched_log(log)
        rate = count / match_s
        print(f"one message matched to {count:,} volunteers ({count / volunteers:.0%}) and published "
              f"in {match_s:.2f} s (matching alone {record.get('match_seconds', float('nan')):.2f} s)")

        # the raw floor: as many messages of the same size, publish_async, msg ids, one stream
        sample = await js.get_last_msg(SUGGESTIONS_STREAM.name, "matcher.suggestions.>")
        payload = sample.data
        assert payload is not None
        await js.add_stream(StreamConfig(name="BENCH_SCRATCH", subjects=["bench.scratch.*"]))
        raw_s = await publish_raw(js, [(f"bench.scratch.v{i}", payload, f"raw-{i}") for i in range(count)])
        assert await stored(js, "BENCH_SCRATCH") == count
        raw_rate = count / raw_s
        await nc.close()
        await contacts.stop()
        await feed.stop()

        print()
        print(f"time to index         : {index_s:8.1f} s  ({volunteers:,} profiles, process start → ready)")
        print(f"time to match+publish : {match_s:8.2f} s  ({count:,} suggestions in JetStream)")
        print(f"matcher publishing    : {rate:>10,.0f} suggestions/s")
        print(f"raw publish_async     : {raw_rate:>10,.0f} msgs/s ({len(payload)} bytes each)")
        print(f"ratio matcher / raw   : {rate / raw_rate:10.3f}")
        print(f"matcher memory        : RSS {rss_indexed['VmRSS'] / 1e6:.0f} MB indexed, "
              f"{rss_after['VmRSS'] / 1e6:.0f} MB after the message (peak {rss_after['VmHWM'] / 1e6:.0f} MB)")
        print()
        print("For the README's benchmark table:")
        print(f"| `make bench-matcher` | {volunteers:,} volunteer profiles indexed; one message matched to "
              f"{count:,} of them, all suggestions published to JetStream vs a raw nats-py `publish_async` loop "
              f"of as many messages | index {index_s:.1f} s; match + publish {match_s:.1f} s = {rate:,.0f} "
              f"suggestions/s vs raw {raw_rate:,.0f}/s (ratio {rate / raw_rate:.2f}); "
              f"matcher RSS {rss_after['VmRSS'] / 1e6:.0f} MB |")
    finally:
        for proc in (matcher, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.matcher_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volunteers", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.volunteers, Path(tmp)))


if __name__ == "__main__":
    main()
