"""A browser-like client for the thin clients' tests: it follows the
session cookie and reads the CSRF token from the page's forms."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

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
