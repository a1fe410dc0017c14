"""Apply the JetStream streams declared in shared/catalogue.py.

This is the only step that creates or changes a stream. Services hold no
JetStream admin rights (deploy/nats/auth.conf): a service that could update
a stream could add a ``republish`` of another channel's jobs into its own
inbox, or set ``max_age`` to a second and empty SUPPRESSIONS. So the streams
are applied here, once, under the NATS user ``streams`` (create, update and
inspect the catalogue's streams, nothing else), before the services start:
``make run`` and the tests run it first (tools/stack.py), Kubernetes runs it
as the Job ``streams`` (deploy/k8s). A service only checks that its streams
exist, and is not ready until they do.

Idempotent: a missing stream is added, one whose declaration changed is
updated in place (its messages kept), one that matches is left alone. A
setting the catalogue does not declare (a ``republish``, ``sources``, a
``mirror``, a subject transform) counts as a change and is removed. Nothing
is ever deleted or purged.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import nats
from nats.js.api import StreamConfig
from nats.js.errors import APIError, NotFoundError

from shared.messaging import inbox_prefix
from shared.catalogue import STREAMS, StreamSpec
from shared.settings import CommonSettings

STREAMS_USER = "streams"  # its grants: tools/nats_permissions.py
# Settings a stream may hold without the catalogue declaring them, and that
# would change where its messages go: applying resets them.
UNDECLARED = ("republish", "sources", "mirror", "subject_transform")

EXAMPLES = """\
examples:
  # the laptop (make run does it for you): the dev nats-server has no users
  python -m tools.streams apply --url nats://127.0.0.1:4322

  # what would change, without changing it
  python -m tools.streams apply --dry-run

  # production, as the Kubernetes Job does: the user's password from the environment
  MAILLAGE_NATS_URL=nats://nats.nats:4222 MAILLAGE_NATS_PASSWORD=... \\
  MAILLAGE_STREAM_REPLICAS=3 python -m tools.streams apply

  # exit 1 when a stream is missing or differs from the catalogue (a CI or cron check)
  python -m tools.streams check

It prints one line a stream: "created", "updated" (with what changed),
"unchanged", or "refused" (with the server's reason; exit status 1).

environment:
  MAILLAGE_NATS_URL         server (default nats://127.0.0.1:4222)
  MAILLAGE_NATS_USER        user (default "streams" when a password is set)
  MAILLAGE_NATS_PASSWORD    its password; never on the command line (ps shows it)
  MAILLAGE_STREAM_REPLICAS  replicas of every stream (default 1; 3 in production)
"""


class Outcome(str, Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    WOULD_CREATE = "would create"
    WOULD_UPDATE = "would update"
    REFUSED = "refused"


@dataclass(frozen=True)
class Applied:
    stream: str
    outcome: Outcome
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.outcome.value:<12} {self.stream}" + (f": {self.detail}" if self.detail else "")


def _comparable(config: StreamConfig, keys: Iterable[str]) -> dict[str, Any]:
    raw = config.as_dict()
    # An empty list and an absent setting mean the same to the server.
    return {k: None if raw.get(k) in (None, [], {}) else raw[k] for k in keys}


def differences(declared: StreamConfig, current: StreamConfig) -> list[str]:
    """What differs, as ``field: current -> declared``; values are stream
    settings (names, subjects, durations), never messages."""
    keys = [k for k, v in declared.as_dict().items() if v is not None] + list(UNDECLARED)
    want, have = _comparable(declared, keys), _comparable(current, keys)
    return [f"{k}: {_show(have[k])} -> {_show(want[k])}" for k in keys if want[k] != have[k]]


def _show(value: Any) -> str:
    return value.value if isinstance(value, Enum) else repr(value)


async def apply_streams(js, specs: Iterable[StreamSpec] = STREAMS, *, replicas: int = 1,
                        dry_run: bool = False) -> list[Applied]:
    """Add or update each stream on a JetStream context; never delete."""
    done = []
    for spec in specs:
        declared = spec.config(replicas)
        try:
            try:
                current = (await js.stream_info(spec.name)).config
            except NotFoundError:
                if not dry_run:
                    await js.add_stream(declared)
                done.append(Applied(spec.name, Outcome.WOULD_CREATE if dry_run else Outcome.CREATED))
                continue
            changed = differences(declared, current)
            if not changed:
                done.append(Applied(spec.name, Outcome.UNCHANGED))
                continue
            if not dry_run:
                await js.update_stream(declared)
            done.append(Applied(spec.name, Outcome.WOULD_UPDATE if dry_run else Outcome.UPDATED, "; ".join(changed)))
        except APIError as exc:  # e.g. a retention change, which JetStream cannot make in place
            done.append(Applied(spec.name, Outcome.REFUSED, exc.description or str(exc)))
    return done


async def apply(url: str, *, user: str | None = None, password: str | None = None, replicas: int = 1,
                dry_run: bool = False, specs: Iterable[StreamSpec] = STREAMS, timeout: float = 10.0) -> list[Applied]:
    """Connect as the streams user (or anonymously, on a server without
    users) and apply. Connection and permission errors propagate."""
    credentials = {"user": user or STREAMS_USER, "password": password} if password else {}

    async def quiet(_exc: Exception) -> None:  # nats-py prints a traceback per failed attempt; the caller reports
        pass

    # A few tries a second apart (a Job may start while NATS rolls), then
    # the error: the Job's own retries take over.
    nc = await nats.connect(url, name="maillage-streams", inbox_prefix=inbox_prefix(user or STREAMS_USER),
                            allow_reconnect=False, connect_timeout=timeout, max_reconnect_attempts=2,
                            reconnect_time_wait=1, error_cb=quiet, **credentials)
    try:
        return await apply_streams(nc.jetstream(timeout=timeout), specs, replicas=replicas, dry_run=dry_run)
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.streams", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(__doc__), epilog=EXAMPLES)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{apply,check}")
    for name, helptext in (("apply", "add the missing streams, update the changed ones"),
                           ("check", "change nothing; exit 1 if a stream is missing or differs")):
        sub = commands.add_parser(name, help=helptext, description=helptext, epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--url", help="NATS server (default: $MAILLAGE_NATS_URL or nats://127.0.0.1:4222)")
        sub.add_argument("--user", help=f"NATS user (default: $MAILLAGE_NATS_USER or {STREAMS_USER!r} with a password)")
        sub.add_argument("--replicas", type=int, help="replicas of each stream (default: $MAILLAGE_STREAM_REPLICAS or 1)")
        if name == "apply":
            sub.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    args = parser.parse_args(argv)
    dry_run = args.command == "check" or args.dry_run
    # The services' own settings (environment, .env): one place for the
    # server, and the replica count the deployment chose.
    common = CommonSettings()
    url = args.url or common.nats_url
    password = common.nats_password.get_secret_value() if common.nats_password else None
    replicas = args.replicas or common.stream_replicas
    try:
        results = asyncio.run(apply(url, user=args.user or common.nats_user, password=password, replicas=replicas,
                                    dry_run=dry_run))
    except (OSError, nats.errors.Error, asyncio.TimeoutError) as exc:
        # A timeout here is how NATS answers a user without the grant: say so.
        print(f"cannot apply the streams on {url}: {type(exc).__name__}: {exc or 'no answer'} "
              f"(is the server up, and is this the {STREAMS_USER!r} user with its password?)", file=sys.stderr)
        return 2
    for result in results:
        print(result, flush=True)
    if any(r.outcome is Outcome.REFUSED for r in results):
        return 1
    if args.command == "check" and any(r.outcome is not Outcome.UNCHANGED for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
