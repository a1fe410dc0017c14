"""maillage — the command line for volunteers and staff.

Examples:
  export MAILLAGE_URL=http://127.0.0.1:8020 MAILLAGE_TOKEN=<your token>
  maillage contacts import ~/Downloads/contacts.csv      # Google/Outlook CSV or vCard
  maillage contacts import liste.csv --map emails=Courriel --map display_name=Nom
  maillage contacts list --interest education
  maillage contacts export --format csv > mon-carnet.csv
  maillage relay inbox                                   # what to relay
  maillage relay send <suggestion id>                    # relay it to all your networks
  maillage publish new --title … --body … --email-body … # staff: see `maillage publish --help`

Your token comes from the invitation link the campaign sent you.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from tools import cli_publish, cli_relay
from tools.cli_common import fail
from tools.cli_common import volunteer_client as client

LIST_FIELDS = {"emails", "phones", "interests"}


def mapping_of(pairs: list[str]) -> dict | None:
    if not pairs:
        return None
    mapping: dict = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep:
            sys.exit(f"--map {pair!r}: write FIELD=COLUMN, e.g. emails=Courriel")
        if field in LIST_FIELDS:
            mapping.setdefault(field, []).append(column)
        else:
            mapping[field] = column
    return mapping


def import_file(args) -> None:
    path = Path(args.file)
    if not path.is_file():
        sys.exit(f"{path}: no such file")
    data = {}
    if mapping := mapping_of(args.map):
        data["mapping"] = json.dumps(mapping)
    if args.delimiter:
        data["delimiter"] = args.delimiter
    with client(args) as http, path.open("rb") as f:
        resp = http.post("/imports", files={"file": (path.name, f)}, data=data)
        if resp.status_code != 202:
            fail(resp)
        job = resp.json()
        with tqdm(total=100, unit="%", desc=f"importing {path.name}", disable=args.quiet,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
            while True:
                bar.n = round(job["progress"] * 100)
                bar.set_postfix_str(f"{job['rows']} rows")
                if job["status"] != "running":
                    break
                time.sleep(0.3)
                job = http.get(f"/imports/{job['id']}").json()
        print(f"{job['rows']} rows: {job['imported']} imported, {job['merged']} merged, "
              f"{job['unchanged']} unchanged, {job['rejected']} rejected")
        if job["rejected"]:
            rows = http.get(f"/imports/{job['id']}/rows", params={"outcome": "rejected", "limit": 1000}).json()
            print("\nrejected rows (fix them and import them again):")
            for row in rows:
                print(f"  row {row['row']}: {row['error']}")
        if job["status"] == "failed":
            sys.exit(f"import failed: {job['error']}")


def list_contacts(args) -> None:
    params = {k: v for k, v in {"q": args.search, "interest": args.interest, "consent": args.consent,
                                "limit": 500}.items() if v}
    with client(args) as http:
        cursor = None
        while True:
            resp = http.get("/contacts", params={**params, **({"cursor": cursor} if cursor else {})})
            if resp.status_code != 200:
                fail(resp)
            page = resp.json()
            for c in page["items"]:
                print(f"{c['name']:<30} {', '.join(c['emails']):<40} {c['consent'].get('email', {}).get('state', '')}"
                      f"  {' '.join(c['interests'])}")
            cursor = page["next_cursor"]
            if not cursor:
                break


def export_book(args) -> None:
    with client(args) as http:
        resp = http.get("/contacts/export", params={"format": args.format})
        if resp.status_code != 200:
            fail(resp)
        sys.stdout.write(resp.text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maillage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("MAILLAGE_URL", "http://127.0.0.1:8020"),
                        help="the contacts service (default: $MAILLAGE_URL or the local one)")
    parser.add_argument("--token", default=os.environ.get("MAILLAGE_TOKEN"),
                        help="your volunteer token (default: $MAILLAGE_TOKEN)")
    areas = parser.add_subparsers(dest="area", required=True)
    contacts = areas.add_parser("contacts", help="your contact book",
                                description="Import, list and export your contact book.")
    actions = contacts.add_subparsers(dest="action", required=True)

    imp = actions.add_parser(
        "import", help="import a Google/Outlook CSV, any CSV, or a vCard file",
        description="Import a contacts file with a progress bar, then print the rows that were "
        "rejected and why. Importing the same file twice changes nothing.",
        epilog="Fields for --map: display_name, first_name, last_name, emails, phones, interests, "
        "commune, region, locale, notes, mastodon, bluesky (emails, phones and interests may repeat).")
    imp.add_argument("file", help="the exported file (.csv or .vcf)")
    imp.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                     help="which column holds what, for a CSV Maillage does not recognise")
    imp.add_argument("--delimiter", choices=[",", ";", "\t", "|"], metavar="CHAR",
                     help="force the CSV delimiter: , ; | or a tab")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(run=import_file)

    lst = actions.add_parser("list", help="list your contacts", description="List your contacts, filtered.")
    lst.add_argument("--search", help="words of a name or email, as prefixes (accents ignored)")
    lst.add_argument("--interest")
    lst.add_argument("--consent", choices=["unknown", "invited", "confirmed", "withdrawn"])
    lst.set_defaults(run=list_contacts)

    exp = actions.add_parser("export", help="export your whole book", description="Export your book to stdout.")
    exp.add_argument("--format", choices=["json", "csv"], default="json")
    exp.set_defaults(run=export_book)

    cli_relay.add_parser(areas)
    cli_publish.add_parser(areas)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
