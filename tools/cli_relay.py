"""`maillage relay …`: the volunteer's inbox from the command line — list
the suggestions, relay one to every network, follow what became of it."""

from __future__ import annotations

import argparse
import time

from tools.cli_common import expect, volunteer_client

EPILOG = """examples:
  export MAILLAGE_URL=http://127.0.0.1:8020 MAILLAGE_TOKEN=<your token>
  maillage relay inbox                      # the suggestions, newest first, with their ids
  maillage relay send 3f9c…                 # relay one to all your networks (emails, posts, share links)
  maillage relay send 3f9c… --wait          # … and wait until every email is sent
  maillage relay send 3f9c… --note "Viens si tu peux !"   # your own words above the message
  maillage relay status 7a1e…               # what became of a relay

A relay sends a personal email to each of your contacts who agreed and
whom the message concerns, posts on the networks you connected, and gives
you a prefilled link for the others. Relaying twice sends nothing twice."""


def show_inbox(args) -> None:
    with volunteer_client(args) as http:
        items = expect(http.get("/inbox"), 200)
    if not items:
        print("nothing to relay yet")
    for item in items:
        done = f"relayed ({item['relay_id']})" if item["relay_id"] else "to relay"
        print(f"{item['suggestion_id']}  {item['title'] or '(untitled)'}\n"
              f"    fits {item['audience_size']} of your contacts: {', '.join(item['matched_interests'])} — {done}")


def print_relay(relay: dict) -> None:
    print(f"relay {relay['relay_id']}")
    for name, channel in relay["channels"].items():
        if channel["status"] == "link":
            print(f"  {name:<9} share: {channel['url']}")
            continue
        skipped = ", ".join(f"{why} {n}" for why, n in channel.get("skipped", {}).items())
        print(f"  {name:<9} {channel['status']}: {channel['queued']} queued, {channel['delivered']} delivered, "
              f"{channel['failed']} failed" + (f" (not sent: {skipped})" if skipped else "")
              + (f" — {channel['reason']}" if channel.get("reason") else ""))


def follow(http, relay: dict, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while any(c["status"] in ("sending", "queued") for c in relay["channels"].values()):
        if time.monotonic() > deadline:
            break
        time.sleep(1)
        relay = expect(http.get(f"/relays/{relay['relay_id']}"), 200)
    return relay


def send(args) -> None:
    with volunteer_client(args) as http:
        relay = expect(http.post(f"/inbox/{args.suggestion_id}/relay",
                                 json={"note": args.note} if args.note else None), 200)
        print_relay(follow(http, relay, args.timeout) if args.wait else relay)


def status(args) -> None:
    with volunteer_client(args) as http:
        print_relay(expect(http.get(f"/relays/{args.relay_id}"), 200))


def add_parser(areas) -> None:
    relay = areas.add_parser("relay", help="your suggestions: list them, relay one in one command",
                             description="Relay the campaign's messages to your networks.", epilog=EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = relay.add_subparsers(dest="action", required=True)
    inbox = actions.add_parser("inbox", help="the messages suggested for your contacts",
                               description="List the suggestions: id, title, how many contacts each fits.")
    inbox.set_defaults(run=show_inbox)
    snd = actions.add_parser("send", help="relay one suggestion to all your networks",
                             description="Relay a suggestion: emails, posts, and the share links to open.",
                             epilog="The suggestion id is the first column of `maillage relay inbox`.")
    snd.add_argument("suggestion_id")
    snd.add_argument("--note", help="a few words of your own, above the message in every email (≤ 2000 characters)")
    snd.add_argument("--wait", action="store_true", help="wait until every email and post is done")
    snd.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits at most (default 120)")
    snd.set_defaults(run=send)
    st = actions.add_parser("status", help="what became of a relay", description="Show a relay, channel by channel.")
    st.add_argument("relay_id")
    st.set_defaults(run=status)
