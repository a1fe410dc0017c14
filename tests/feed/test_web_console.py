"""The staff console through the real feed app (real nats-server, SQLite):
sign-in with a staff token, the roles, CSRF, compose with the server's own
counters, the lifecycle through the forms, the taxonomy, and the live
reach stream (k-anonymous)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.feed.app import create_app
from services.feed.settings import FeedSettings
from shared.postlength import graphemes, mastodon_length, short_post, x_length
from shared.settings import CommonSettings
from tests.support.apps import STAFF_TOKEN
from tests.support.web_client import Browser

ADMIN = {"Authorization": f"Bearer {STAFF_TOKEN}"}
PAGES = ("/console/messages", "/console/compose", "/console/taxonomy")
MESSAGE = {"title": "Nos écoles méritent mieux", "body": "Réunion **publique** le 12 décembre.",
           "link": "https://campagne.example/ecoles", "interests_text": "education, transport",
           "email_subject": "Réunion sur nos écoles", "email_body": "Rendez-vous le 12 décembre à 19 h.",
           "short_text": "Réunion publique sur nos écoles, le 12/12 🎉", "priority": "1"}


@pytest.fixture
def client(nats_url, tmp_path) -> Iterator[TestClient]:
    app = create_app(FeedSettings(staff_token=STAFF_TOKEN, database_url=f"sqlite:///{tmp_path / 'feed.db'}",
                                  common=CommonSettings(nats_url=nats_url)))
    with TestClient(app, base_url="https://testserver") as http:
        yield http


def signed_in(client: TestClient, token: str = STAFF_TOKEN) -> Browser:
    browser = Browser(client)
    answer = browser.post_form("/console/sign-in", {"token": token}, from_page="/console/sign-in")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/messages", answer.text
    return browser


def staff_account(client: TestClient, role: str) -> tuple[str, str]:
    made = client.post("/staff", json={"name": f"Camille ({role})", "role": role}, headers=ADMIN).json()
    return made["id"], made["token"]


def compose(browser: Browser, action: str, **fields) -> object:
    return browser.post_form("/console/compose", {**MESSAGE, **fields, "action": action}, from_page="/console/compose")


def test_sign_in_makes_a_strict_cookie_and_pages_need_it(client):
    browser = Browser(client)
    for path in PAGES:
        assert browser.get(path).headers["location"] == "/console/sign-in", path
    bad = browser.post_form("/console/sign-in", {"token": "nope"}, from_page="/console/sign-in")
    assert bad.status_code == 401 and "jeton : inconnu ou révoqué" in bad.text
    answer = browser.post_form("/console/sign-in", {"token": STAFF_TOKEN}, from_page="/console/sign-in")
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    assert STAFF_TOKEN.lower() not in cookie
    for path in PAGES:
        page = browser.get(path)
        assert page.status_code == 200, path
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) and " style=" not in page.text
    english = browser.get("/console/compose", headers={"Accept-Language": "en-US,en"})
    assert '<html lang="en">' in english.text and "Write a message" in english.text


def test_posts_without_the_csrf_token_are_refused(client):
    browser = signed_in(client)
    assert browser.post("/console/compose", data={**MESSAGE, "action": "draft"}).status_code == 403
    assert browser.post("/console/measure", json={"text": "x"}).status_code == 403
    assert browser.post("/console/measure", json={"text": "x"}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert browser.post("/console/taxonomy", data={"terms": "education"}).status_code == 403
    assert client.get("/messages", headers=ADMIN).json() == [], "nothing was written"


def test_counters_are_the_servers_own_count(client):
    browser = signed_in(client)
    token = re.search(r'data-csrf="([^"]+)"', browser.get("/console/compose").text).group(1)
    text, link = "Réunion 🎉 avec @alice@mastodon.example 日本", "https://campagne.example/ecoles"
    measured = browser.post("/console/measure", json={"text": text, "link": link, "body": "**gras** <script>x</script>"},
                            headers={"X-CSRF-Token": token}).json()
    post = short_post(text, link)
    assert measured["post"] == post
    counts = {n["network"]: (n["count"], n["limit"]) for n in measured["networks"]}
    assert counts == {"X": (x_length(post), 280), "Bluesky": (graphemes(post), 300),
                      "Mastodon": (mastodon_length(post), 500)}
    assert "<strong>gras</strong>" in measured["body_html"] and "<script" not in measured["body_html"]


def test_draft_approve_publish_withdraw_through_the_forms(client):
    browser = signed_in(client)
    made = compose(browser, "draft")
    assert made.status_code == 303, made.text
    path = made.headers["location"]
    page = browser.get(path).text
    assert "badge draft" in page and "<strong>publique</strong>" in page
    for action, state in (("approve", "approved"), ("publish", "published")):
        moved = browser.post_form(f"{path}/{action}", from_page=path)
        assert moved.status_code == 303, moved.text
        assert f"badge {state}" in browser.get(path).text
    again = browser.post_form(f"{path}/approve", from_page=path)
    assert again.status_code == 409 and "cannot approve a message that is published" in again.text
    assert browser.post_form(f"{path}/withdraw", from_page=path).status_code == 303
    assert "badge withdrawn" in browser.get(path).text
    assert browser.post_form(f"{path}/explode", from_page=path).status_code == 404


def test_bad_messages_name_the_field(client):
    browser = signed_in(client)
    long = compose(browser, "publish", short_text="é" * 290)
    assert long.status_code == 422 and "variants.short.text" in long.text and "X allows 280" in long.text
    assert 'value="Nos écoles méritent mieux"' in long.text, "the form keeps what was typed"
    script = compose(browser, "draft", body="Bonjour <script>alert(1)</script>")
    assert script.status_code == 422 and "script" in script.text
    when = compose(browser, "draft", publish_at="demain")
    assert when.status_code == 422 and "publish_at: not a date and time" in when.text
    prio = compose(browser, "draft", priority="urgent!")
    assert prio.status_code == 422 and "priority:" in prio.text
    header = compose(browser, "publish", email_subject="Réunion\r\nBcc: tous@exemple.fr")
    assert header.status_code == 422 and "variants.email.subject" in header.text and "control character" in header.text
    assert client.get("/messages", headers=ADMIN).json() == []


def test_scheduled_publish_and_a_double_submit_is_one_message(client):
    browser = signed_in(client)
    token_page = browser.get("/console/compose").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', token_page).group(1)
    fields = {**MESSAGE, "action": "publish", "idempotency_key": key, "publish_at": "2099-01-01T09:00"}
    csrf = re.search(r'name="csrf" value="([^"]+)"', token_page).group(1)
    first = browser.post("/console/compose", data={**fields, "csrf": csrf})
    second = browser.post("/console/compose", data={**fields, "csrf": csrf})
    assert first.headers["location"] == second.headers["location"]
    stored = client.get("/messages", headers=ADMIN).json()
    assert len(stored) == 1 and stored[0]["state"] == "scheduled"
    assert stored[0]["publish_at"].startswith("2099-01-01T08:00")  # 09:00 in Paris, winter time


def test_roles_are_the_apis_and_revocation_ends_the_session(client):
    account_id, token = staff_account(client, "editor")
    editor = signed_in(client, token)
    compose_page = editor.get("/console/compose").text
    assert 'value="publish"' not in compose_page, "an editor sees no publish button"
    refused = compose(editor, "publish")
    assert refused.status_code == 403 and "this needs the publisher role" in refused.text
    made = compose(editor, "draft")
    assert made.status_code == 303
    approve = editor.post_form(f"{made.headers['location']}/approve", from_page="/console/messages")
    assert approve.status_code == 403
    taxonomy = editor.post_form("/console/taxonomy", {"terms": "education"}, from_page="/console/taxonomy")
    assert taxonomy.status_code == 403 and "admin" in taxonomy.text
    assert client.post(f"/staff/{account_id}/revoke", headers=ADMIN).status_code == 200
    assert editor.get("/console/messages").headers["location"] == "/console/sign-in"


def test_taxonomy_form(client):
    browser = signed_in(client)
    saved = browser.post_form("/console/taxonomy", {"terms": "education | Éducation | Education\ntransport"},
                              from_page="/console/taxonomy")
    assert saved.status_code == 303
    assert [t["name"] for t in client.get("/taxonomy", headers=ADMIN).json()["terms"]] == ["education", "transport"]
    page = browser.get("/console/compose").text
    assert 'name="interests" value="education"' in page  # compose offers the taxonomy's words
    bad = browser.post_form("/console/taxonomy", {"terms": "a | b | c | d"}, from_page="/console/taxonomy")
    assert bad.status_code == 422 and "terms: line 1" in bad.text
    dup = browser.post_form("/console/taxonomy", {"terms": "education\neducation"}, from_page="/console/taxonomy")
    assert dup.status_code == 422 and "terms" in dup.text


def test_the_reach_streams_as_server_sent_events_k_anonymous(client):
    browser = signed_in(client)
    path = compose(browser, "publish").headers["location"]
    page = browser.get(path).text
    assert 'data-events-url="' in page and "&lt; 5" in page  # nothing yet: every figure hidden
    assert "&lt; 5 relais, &lt; 5 courriels distribués" in browser.get("/console/messages").text
    client.cookies = browser.jar
    with client.stream("GET", f"{path}/reach/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "event: reach"
        data = json.loads(next(lines).removeprefix("data: "))
    reach = data["reach"]
    assert reach["k"] == 5 and reach["volunteers_suggested"] == {"value": None, "suppressed": True}
    assert set(reach["by_interest"]) == {"education", "transport"}
    assert browser.get("/console/messages/nope/reach/events").status_code == 404
