"""The NATS accounts and users of a deployment, generated from the catalogue.

``python -m tools.nats_permissions --write deploy/nats/auth.conf`` writes the
file the NATS Helm release includes; ``--check`` fails when the committed file
no longer matches ``shared/catalogue.py`` (a test runs it, like the AsyncAPI
check).

Every service is a user of one JetStream account, allowed exactly:
- to publish the subjects it produces, and nothing else on the data plane;
- the JetStream API calls its ``Bus`` makes: inspect the streams it touches
  (``STREAM.INFO``: are they there?), and create, inspect and pull from
  consumers on the streams it reads, acking what it got;
- no JetStream administration at all, allowed nowhere and denied outright
  (``ADMIN_APIS``): a user who may update a stream can add a ``republish``
  of any subject into its own inbox, or a one-second ``max_age`` that
  empties it. Streams are applied by ``python -m tools.streams apply`` as the
  user ``streams``, which may create, update and inspect the catalogue's
  streams and nothing else (no data, no delete, no purge);
- to subscribe only under its own inbox prefix (``shared.messaging.inbox_prefix``),
  where its PubAcks and pulled messages arrive: no user can read another's
  replies, and none subscribes to a data subject at all.

Reading a stream goes through a consumer. A consumer created as
``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`` carries its filter in the
subject, so the permission pins what it can read; the short form
``CONSUMER.CREATE.<stream>`` (ordered consumers) carries it in the body, so it
is granted only where every subject the service cannot read is PII-free
(a *guarded* stream refuses it). On a guarded stream the service reads through
a consumer named after itself only (the dispatchers' durables are
``dispatch-<channel>``), so it cannot pull from another channel's consumer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.messaging import inbox_prefix
from shared.catalogue import SERVICES, STREAMS, SUBJECTS, StreamSpec, SubjectSpec
from tools.streams import STREAMS_USER

ACCOUNT = "MAILLAGE"
OPS_USER = "ops"  # operators' nats CLI: stream reports, dead-letter replays
DEFAULT_PATH = Path("deploy/nats/auth.conf")
# Every JetStream API that changes a stream or another's consumer, or reads
# a stream's messages outside a consumer; a service is denied each of them
# even if a later grant would match (a deny wins over an allow in NATS).
ADMIN_APIS = (
    "$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.MSG.GET.>",
    "$JS.API.DIRECT.GET.>", "$JS.API.STREAM.SNAPSHOT.>", "$JS.API.STREAM.RESTORE.>",
    "$JS.API.STREAM.PEER.REMOVE.>", "$JS.API.STREAM.LEADER.STEPDOWN.>", "$JS.API.STREAM.TEMPLATE.>",
    "$JS.API.CONSUMER.DELETE.>", "$JS.API.CONSUMER.PAUSE.>", "$JS.API.CONSUMER.UNPIN.>",
    # the legacy create names the durable in the body only: it could rewrite another's
    "$JS.API.CONSUMER.DURABLE.CREATE.>",
    "$JS.API.CONSUMER.LEADER.STEPDOWN.>", "$JS.API.META.>", "$JS.API.SERVER.>",
    "$JS.API.ACCOUNT.>",
)


def password_variable(user: str) -> str:
    """The environment variable holding a user's password on the NATS
    server (the Helm release fills it from a Secret)."""
    return "NATS_PASSWORD_" + user.upper().replace("-", "_")


def _subjects_of(stream: StreamSpec) -> list[SubjectSpec]:
    return [s for s in SUBJECTS if s.stream.name == stream.name]


def read_streams(service: str) -> list[StreamSpec]:
    return [st for st in STREAMS if any(service in s.consumers for s in _subjects_of(st))]


def guarded(service: str, stream: StreamSpec) -> bool:
    """The stream holds PII the service must not read."""
    return any(s.carries_pii and service not in s.consumers for s in _subjects_of(stream))


def touched_streams(service: str) -> list[StreamSpec]:
    return [st for st in STREAMS
            if any(service == s.producer or service in s.consumers for s in _subjects_of(st))]


def _read_grants(service: str, stream: StreamSpec) -> list[str]:
    name = stream.name
    consumer = service if guarded(service, stream) else "*"
    grants = [f"$JS.API.CONSUMER.CREATE.{name}.{consumer}.{s.pattern}"
              for s in _subjects_of(stream) if service in s.consumers]
    if not guarded(service, stream):
        grants += [f"$JS.API.CONSUMER.CREATE.{name}", f"$JS.FC.{name}.>"]  # ordered consumers
    grants += [
        f"$JS.API.CONSUMER.INFO.{name}.{consumer}",
        f"$JS.API.CONSUMER.MSG.NEXT.{name}.{consumer}",
        f"$JS.ACK.{name}.{consumer}.>",
    ]
    return grants


def permissions(service: str) -> dict[str, list[str]]:
    publish = [s.pattern for s in SUBJECTS if s.producer == service]
    publish += [f"$JS.API.STREAM.INFO.{stream.name}" for stream in touched_streams(service)]
    for stream in read_streams(service):
        publish += _read_grants(service, stream)
    return {"publish": publish, "deny": list(ADMIN_APIS), "subscribe": [f"{inbox_prefix(service)}.>"]}


def streams_permissions() -> dict[str, list[str]]:
    """The streams step: add, update and inspect the catalogue's streams.
    No data subject, no consumer, no delete or purge: applying a declaration
    never needs them."""
    publish = [f"$JS.API.STREAM.{op}.{stream.name}" for stream in STREAMS for op in ("INFO", "CREATE", "UPDATE")]
    deny = [api for api in ADMIN_APIS if api not in ("$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>")]
    return {"publish": publish, "deny": deny, "subscribe": [f"{inbox_prefix(STREAMS_USER)}.>"]}


def user_permissions() -> dict[str, dict[str, list[str]]]:
    """Every restricted user (the services and the streams step)."""
    return {**{service: permissions(service) for service in SERVICES}, STREAMS_USER: streams_permissions()}


def _list(key: str, items: list[str], indent: str) -> list[str]:
    """One subject a line: a review of the file reads like the catalogue."""
    return [f"{indent}{key}: ["] + [f'{indent}  "{i}"' for i in items] + [f"{indent}]"]


def render() -> str:
    lines = [
        "# Generated by `python -m tools.nats_permissions` from shared/catalogue.py: do not edit.",
        "# Passwords come from the server's environment (a Secret); see deploy/README.md.",
        "accounts {",
        f"  {ACCOUNT} {{",
        "    jetstream: enabled",
        "    users: [",
    ]
    for user, perms in user_permissions().items():
        lines += [
            f'      {{ user: "{user}", password: ${password_variable(user)}, permissions: {{',
            "        publish: {", *_list("allow", perms["publish"], " " * 10), *_list("deny", perms["deny"], " " * 10),
            "        }",
            "        subscribe: {", *_list("allow", perms["subscribe"], " " * 10), "        }",
            "      } }",
        ]
    lines += [
        f'      {{ user: "{OPS_USER}", password: ${password_variable(OPS_USER)} }}',
        "    ]",
        "  }",
        "}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.nats_permissions", description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the config here")
    parser.add_argument("--check", type=Path, help="fail if this file is not what the catalogue generates")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.check.exists() or args.check.read_text() != text:
            print(f"{args.check} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
