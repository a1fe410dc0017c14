"""A local SMTP sink for development: accepts every message, stores it as an
``.eml`` file under a folder, and lists what it got on a small web page.

    python -m tools.smtp_sink --smtp-port 2525 --web-port 8025 --dir var/mail
    python -m tools.smtp_sink --list --dir var/mail     # print what arrived
"""

from __future__ import annotations

import argparse
import email
import email.policy
import html
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller


class MaildirHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            name = f"{time.time_ns()}.eml"
            (self.folder / name).write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def summaries(folder: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted(folder.glob("*.eml"), reverse=True):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        rows.append(
            {
                "file": path.name,
                "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(path.stem) / 1e9)),
                "from": str(msg["From"]),
                "to": str(msg["To"]),
                "reply_to": str(msg["Reply-To"]),
                "subject": str(msg["Subject"]),
            }
        )
    return rows


def web_handler(folder: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.strip("/")
            if name and (folder / name).is_file() and "/" not in name and name.endswith(".eml"):
                body = (folder / name).read_bytes()
                self._send(200, body, "text/plain; charset=utf-8")
                return
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(r[k])}</td>" for k in ("date", "from", "to", "reply_to"))
                + f'<td><a href="/{r["file"]}">{html.escape(r["subject"])}</a></td></tr>'
                for r in summaries(folder)
            )
            page = (
                "<!doctype html><meta charset=utf-8><title>Maillage mail sink</title>"
                "<h1>Mail received / Courriels reçus</h1><table border=1 cellpadding=4>"
                "<tr><th>date</th><th>From</th><th>To</th><th>Reply-To</th><th>Subject</th></tr>"
                f"{rows}</table>"
            )
            self._send(200, page.encode(), "text/html; charset=utf-8")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:  # quiet: the launcher prints URLs
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.smtp_sink", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=2525)
    parser.add_argument("--web-port", type=int, default=8025, help="0 disables the web page")
    parser.add_argument("--dir", type=Path, default=Path("var/mail"), help="where .eml files go")
    parser.add_argument("--list", action="store_true", help="print the mail received and exit")
    args = parser.parse_args(argv)

    if args.list:
        for r in summaries(args.dir):
            print(f"{r['date']}  {r['to']:<40}  {r['subject']}  (from {r['from']}, reply-to {r['reply_to']})")
        return

    controller = Controller(MaildirHandler(args.dir), hostname=args.host, port=args.smtp_port)
    controller.start()
    web = None
    if args.web_port:
        web = ThreadingHTTPServer((args.host, args.web_port), web_handler(args.dir))
        threading.Thread(target=web.serve_forever, daemon=True).start()
    print(f"smtp sink on {args.host}:{args.smtp_port}, storing in {args.dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    if web:
        web.shutdown()


if __name__ == "__main__":
    main()
