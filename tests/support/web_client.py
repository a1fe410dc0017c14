"""A browser-like client for the thin clients' tests: it follows the
session cookie and reads the CSRF token from the page's forms; and the
volunteer's usual first steps with it (signed in by an invitation, a file
imported, the contacts' ids read off the page)."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from tests.support.apps import PROVISIONING_TOKEN
from tests.support.waiting import poll

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Browser:
    """One visitor with their own cookies, on the app's running TestClient
    (over https: the cookies are Secure). Several browsers share the client
    because the app's NATS connection lives on that client's event loop.
    Redirects are not followed, so each 303 can be checked."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.jar = httpx.Cookies()

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        self.client.cookies = self.jar
        try:
            return self.client.request(method, path, follow_redirects=False, **kw)
        finally:
            self.jar = httpx.Cookies(self.client.cookies)
            self.client.cookies = httpx.Cookies()

    def get(self, path: str, **kw) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.request("POST", path, **kw)

    def post_form(self, path: str, data: dict | None = None, *, from_page: str, files=None) -> httpx.Response:
        """Submit a form as the page ``from_page`` holds it (its token)."""
        token = csrf_of(self.get(from_page).text)
        return self.post(path, data={**(data or {}), "csrf": token}, files=files)


ADMIN = {"Authorization": f"Bearer {PROVISIONING_TOKEN}"}


def invite(http: TestClient, name: str, email: str) -> str:
    answer = http.post("/admin/invites", json={"display_name": name, "email": email}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    assert "/join#" in answer.json()["invite_url"]
    return answer.json()["code"]


def signed_in(client: TestClient, name: str = "Alice Martin", email: str = "alice@benevoles.example") -> Browser:
    """A fresh browser (its own cookie jar) on the running app, signed in by an invitation."""
    browser = Browser(client)
    code = invite(client, name, email)
    answer = browser.post_form("/app/sign-in/invite", {"code": code}, from_page="/join")
    assert answer.status_code == 303 and answer.headers["location"] == "/app/inbox", answer.text
    return browser


def import_file(browser: Browser, text: str) -> str:
    answer = browser.post_form("/app/import", from_page="/app/import",
                               files={"file": ("contacts.csv", text.encode(), "text/csv")})
    assert answer.status_code == 303, answer.text
    report_path = answer.headers["location"]
    poll(lambda: browser.get(f"{report_path}/status").json(), lambda job: job["status"] != "running",
         what="the import to finish")
    return report_path


def contact_ids_in(page: str) -> dict[str, str]:
    return {name: cid for cid, name in re.findall(r'href="/app/contacts/([0-9a-f]{32})">([^<]+)</a>', page)}


def contact_ids(browser: Browser) -> dict[str, str]:
    return contact_ids_in(browser.get("/app/contacts").text)
