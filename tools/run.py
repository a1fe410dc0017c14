"""`make run`: the whole of Maillage on this machine, with demo data.

Starts NATS (JetStream, data in var/nats), applies the streams
(python -m tools.streams apply: the services may not), the SMTP sink (mail in var/mail),
feed, contacts, matcher, the email dispatcher and the Mastodon, Bluesky and
X dispatchers as separate processes,
seeds a demo campaign, prints where to look, and stops everything on Ctrl-C.
Logs go to var/log/<process>.log."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tools.seed import seed
from tools.stack import Ports, Stack, StackConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--var", type=Path, default=Path("var"), help="state folder (default: var/)")
    parser.add_argument("--no-seed", action="store_true", help="start without demo data")
    parser.add_argument("--free-ports", action="store_true",
                        help="pick free ports instead of the defaults (NATS 4322, SMTP 2525, web 8010-8043)")
    parser.add_argument("--ready-only", action="store_true",
                        help="stop as soon as everything is ready and seeded (smoke check)")
    args = parser.parse_args(argv)

    cfg = StackConfig(var=args.var, ports=Ports.free() if args.free_ports else Ports())
    stack = Stack(cfg)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        seconds = stack.start()
        demo = None if args.no_seed else seed(cfg.url("feed"), cfg.url("contacts"),
                                              cfg.staff_token, cfg.provisioning_token, cfg.var)
        print_welcome(cfg, seconds, demo)
        if not args.ready_only:
            stop.wait()
    finally:
        print("\nstopping…", flush=True)
        stack.stop()
        print("stopped.", flush=True)


def print_welcome(cfg: StackConfig, seconds: float, demo: dict | None) -> None:
    p = cfg.ports
    lines = [
        "",
        f"Maillage is up in {seconds:.1f}s. Ctrl-C stops everything.",
        "",
        f"  feed (staff)        {cfg.url('feed')}/docs        staff token: {cfg.staff_token}",
        f"  contacts (volunteer) {cfg.url('contacts')}/docs",
        f"  volunteers' web app {cfg.url('contacts')}/app/   (sign in with a demo volunteer token below)",
        f"  staff console       {cfg.url('feed')}/console/   (sign in with the staff token)",
        f"  matcher             {cfg.url('matcher')}/readyz",
        f"  dispatch email      {cfg.url('dispatch_email')}/metrics",
        f"  dispatch social     {cfg.url('dispatch_mastodon')}/metrics  {cfg.url('dispatch_bluesky')}/metrics  "
        f"{cfg.url('dispatch_x')}/metrics",
        f"  mail received       http://127.0.0.1:{p.mail_web}/   (files in {cfg.var}/mail)",
        f"  NATS                nats://127.0.0.1:{p.nats}",
        f"  logs                {cfg.var}/log/",
    ]
    if demo:
        lines += ["", f"  demo volunteers (bearer tokens, kept in {cfg.var}/demo-volunteers.json):"]
        lines += [f"    {name:<14} {token}" for name, token in demo["volunteers"].items()]
        alice = next(iter(demo["volunteers"].values()))
        lines += [
            "",
            "  try it: relay the demo message as Alice, then look at the mail received",
            f"    curl -s -H 'Authorization: Bearer {alice}' {cfg.url('contacts')}/inbox",
            f"    curl -s -X POST -H 'Authorization: Bearer {alice}' {cfg.url('contacts')}/inbox/<suggestion_id>/relay",
            f"    curl -s -H 'Authorization: Bearer {cfg.staff_token}' {cfg.url('feed')}/messages/{demo['message_id']}",
        ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
