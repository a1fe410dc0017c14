"""`maillage publish …`: the staff's desk from the command line — write
and publish (now, at a time, or as a draft), list, approve, publish an
approved draft, withdraw, and read a message's k-anonymous reach."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from tools.cli_common import client, expect

EPILOG = """examples:
  export MAILLAGE_FEED_URL=http://127.0.0.1:8010 MAILLAGE_STAFF_TOKEN=<your staff token>
  maillage publish new --title "Nos écoles" --body-file ecoles.md --interest education \\
      --email-subject "Réunion sur nos écoles" --email-body-file courriel.txt \\
      --short "Réunion le 12/12, salle des fêtes" --link https://campagne.example/ecoles
  maillage publish new … --at 2026-12-01T09:00+01:00     # scheduled: goes out at that time
  maillage publish new … --draft                         # a draft, for a publisher to approve
  maillage publish list --state draft
  maillage publish approve 6997…  &&  maillage publish now 6997…
  maillage publish withdraw 6997…                        # it leaves every volunteer's inbox
  maillage publish reach 6997…                           # aggregates over k volunteers at least

Running the same `new` command twice publishes one message (its content is
its Idempotency-Key), so a retry after a network error is safe."""


def staff(args):
    return client(args.feed_url, args.staff_token, "pass --staff-token or set MAILLAGE_STAFF_TOKEN")


def text_of(inline: str | None, path: str | None, what: str) -> str | None:
    if path:
        if path == "-":
            return sys.stdin.read()
        if not Path(path).is_file():
            sys.exit(f"{what}: {path}: no such file")
        return Path(path).read_text(encoding="utf-8")
    return inline


def when(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        sys.exit(f"{option}: {value!r} is not a date and time, e.g. 2026-12-01T09:00+01:00")
    if at.tzinfo is None:
        sys.exit(f"{option}: give the time zone, e.g. 2026-12-01T09:00+01:00 (Paris, winter)")
    return at.isoformat()


def message_of(args) -> dict:
    body = text_of(args.body, args.body_file, "--body-file")
    email_body = text_of(args.email_body, args.email_body_file, "--email-body-file")
    if not body or not email_body:
        sys.exit("give the message's text (--body or --body-file) and the email's (--email-body or --email-body-file)")
    message = {"title": args.title, "body": body, "interests": args.interest, "regions": args.region,
               "priority": args.priority, "link": args.link,
               "publish_at": when(args.at, "--at"), "expires_at": when(args.expires, "--expires"),
               "variants": {"email": {"subject": args.email_subject or args.title, "body": email_body},
                            **({"short": {"text": args.short}} if args.short else {})}}
    return {k: v for k, v in message.items() if v is not None}


def figure(cell: dict, k: int | str = "k") -> str:
    """A staff figure as the report gives it: hidden under k volunteers."""
    return f"< {k}" if cell["suppressed"] else str(cell["value"])


def print_message(m: dict) -> None:
    print(f"{m['id']}  {m['state']:<10} {m['title']}")
    if m.get("publish_at") and m["state"] == "scheduled":
        print(f"    goes out at {m['publish_at']}")
    if m["state"] in ("published", "withdrawn", "expired") and m.get("stats"):
        s = m["stats"]
        print(f"    relays {figure(s['relays'])}, emails delivered {figure(s['emails_delivered'])}")


def new(args) -> None:
    message = message_of(args)
    key = args.key or hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()[:40]
    with staff(args) as http:
        made = expect(http.post("/drafts" if args.draft else "/messages", json=message,
                                headers={"Idempotency-Key": key}), 200, 201)
    print_message(made)


def list_messages(args) -> None:
    with staff(args) as http:
        for m in expect(http.get("/messages", params={"state": args.state} if args.state else {}), 200):
            print_message(m)


def move(action: str):
    def run(args) -> None:
        with staff(args) as http:
            print_message(expect(http.post(f"/messages/{args.message_id}/{action}"), 200))

    return run


def reach(args) -> None:
    with staff(args) as http:
        r = expect(http.get(f"/messages/{args.message_id}/reach"), 200)

    def fig(cell: dict) -> str:
        return figure(cell, r["k"])

    print(f"volunteers asked {fig(r['volunteers_suggested'])}, contacts concerned {fig(r['audience'])}, "
          f"relays {fig(r['relays'])}   (a figure needs {r['k']} volunteers, and {r['k']} more to move)")
    for channel, row in r["channels"].items():
        print(f"  {channel:<9} " + ", ".join(f"{name} {fig(cell)}" for name, cell in row.items()))
    for title, rows in (("interest", r["by_interest"]), ("region", r["by_region"])):
        for name, row in rows.items():
            print(f"  {title} {name}: " + ", ".join(f"{k} {fig(c)}" for k, c in row.items()))


def add_parser(areas) -> None:
    publish = areas.add_parser("publish", help="staff: write, publish, withdraw messages; read their reach",
                               description="The campaign's publishing desk (staff token).", epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    publish.add_argument("--feed-url", default=os.environ.get("MAILLAGE_FEED_URL", "http://127.0.0.1:8010"),
                         help="the feed service (default: $MAILLAGE_FEED_URL or the local one)")
    publish.add_argument("--staff-token", default=os.environ.get("MAILLAGE_STAFF_TOKEN"),
                         help="your staff token (default: $MAILLAGE_STAFF_TOKEN)")
    actions = publish.add_subparsers(dest="action", required=True)

    n = actions.add_parser("new", help="write a message and publish it (or schedule it, or keep it a draft)",
                           description="Write a message. A publisher's message goes out at once, or at --at; "
                           "with --draft it waits for approval.", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    n.add_argument("--title", required=True)
    n.add_argument("--body", help="the message, in Markdown (what volunteers read)")
    n.add_argument("--body-file", metavar="FILE", help="… from a file (- reads stdin)")
    n.add_argument("--email-subject", help="the email's subject (default: the title)")
    n.add_argument("--email-body", help="the email each volunteer sends in their own name")
    n.add_argument("--email-body-file", metavar="FILE", help="… from a file (- reads stdin)")
    n.add_argument("--short", help="the short post for Mastodon, Bluesky, X and share links (the link is added)")
    n.add_argument("--link", help="the campaign page the message points to")
    n.add_argument("--interest", action="append", default=[], help="an interest it targets (repeat); none: everyone")
    n.add_argument("--region", action="append", default=[], help="a region it targets (repeat); none: everywhere")
    n.add_argument("--priority", type=int, choices=range(4), default=1, help="0 low … 3 urgent (default 1)")
    n.add_argument("--at", metavar="WHEN", help="publish at this time (ISO 8601 with its offset)")
    n.add_argument("--expires", metavar="WHEN", help="withdraw it by itself at this time")
    n.add_argument("--draft", action="store_true", help="keep it a draft (an editor's way)")
    n.add_argument("--key", help="Idempotency-Key (default: a hash of the content)")
    n.set_defaults(run=new)

    ls = actions.add_parser("list", help="the messages, newest first", description="List the messages.")
    ls.add_argument("--state", choices=["draft", "approved", "scheduled", "published", "withdrawn", "expired"])
    ls.set_defaults(run=list_messages)
    for action, verb, helptext in (("approve", "approve", "approve a draft (publisher)"),
                                   ("now", "publish", "publish an approved message (publisher)"),
                                   ("withdraw", "withdraw", "withdraw a message: it leaves every inbox")):
        p = actions.add_parser(action, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        p.add_argument("message_id")
        p.set_defaults(run=move(verb))
    rc = actions.add_parser("reach", help="how far a message went (k-anonymous)",
                            description="A message's reach: volunteers, relays, per channel, interest and region; "
                            "a figure shows once k volunteers contributed to it, and moves only when k more did.")
    rc.add_argument("message_id")
    rc.set_defaults(run=reach)
