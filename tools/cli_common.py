"""What every `maillage` command shares: an HTTP client with its token,
and errors said the way the API says them (which field, why)."""

from __future__ import annotations

import sys
from typing import Any

import httpx


def client(url: str, token: str | None, where: str) -> httpx.Client:
    """``where``: where the token comes from, for the error that says it is missing."""
    if not token:
        sys.exit(f"no token: {where}")
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def fail(resp: httpx.Response) -> None:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = resp.text
    if isinstance(detail, list):  # FastAPI validation errors: which field, why
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail)
    sys.exit(f"error {resp.status_code}: {detail}")


def expect(resp: httpx.Response, *ok: int) -> Any:  # the JSON the route answers
    if resp.status_code not in ok:
        fail(resp)
    return resp.json()


def volunteer_client(args) -> httpx.Client:
    """The contacts service with the volunteer's token (--url, --token)."""
    return client(args.url, args.token, "pass --token or set MAILLAGE_TOKEN (it comes from your invitation link)")
