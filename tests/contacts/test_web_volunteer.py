"""The volunteer's web app through the real contacts app (real nats-server,
SQLite): sign-in by the invitation link, sessions and their cookie, CSRF,
the security headers, the languages, scoping between volunteers, and each
page's forms, bad input included (a field named, never a 500)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.contacts.app import create_app
from tests.support.apps import PROVISIONING_TOKEN, contacts_settings
from tests.support.web_client import (
    Browser,
    contact_ids,
    contact_ids_in,
    csrf_of,
    import_file,
    invite,
    signed_in,
)

PAGES = ("/app/inbox", "/app/contacts", "/app/networks", "/app/interests", "/app/history", "/app/import")


@pytest.fixture
def app(nats_url, tmp_path):
    return create_app(contacts_settings(nats_url, f"sqlite:///{tmp_path / 'contacts.db'}"))


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver") as http:
        yield http


def test_the_invitation_link_becomes_a_strict_session_cookie(client, app):
    code = invite(client, "Alice Martin", "alice@benevoles.example")
    browser = Browser(client)
    join = browser.get("/join")
    assert join.status_code == 200 and 'id="join-form"' in join.text
    answer = browser.post_form("/app/sign-in/invite", {"code": code}, from_page="/join")
    assert answer.status_code == 303 and answer.headers["location"] == "/app/inbox"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    assert code not in answer.headers["set-cookie"] and code not in answer.headers["location"]
    inbox = browser.get("/app/inbox")
    assert inbox.status_code == 200 and "Alice" not in inbox.url.path
    assert inbox.headers["cache-control"] == "no-store"

    # the code works once
    again = browser.post_form("/app/sign-in/invite", {"code": code}, from_page="/join")
    assert again.status_code == 400 and "code: this invitation is unknown, used or expired" in again.text

    # signing out ends the session
    assert browser.post_form("/app/sign-out", from_page="/app/inbox").status_code == 303
    assert browser.get("/app/inbox").headers["location"] == "/app/sign-in"


def test_every_page_needs_a_session_and_a_bad_token_is_refused(client):
    browser = Browser(client)
    for path in PAGES:
        answer = browser.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/app/sign-in", path
    bad = browser.post_form("/app/sign-in", {"token": "vol_not-a-real-token"}, from_page="/app/sign-in")
    assert bad.status_code == 401 and "jeton : inconnu ou révoqué" in bad.text
    staff = browser.post_form("/app/sign-in", {"token": PROVISIONING_TOKEN}, from_page="/app/sign-in")
    assert staff.status_code == 401, "the provisioning token opens no volunteer page"


def test_a_post_without_its_csrf_token_is_refused(client):
    browser = signed_in(client)
    for path, data in (("/app/inbox/anything/relay", {}), ("/app/lang", {"lang": "en"}),
                       ("/app/interests", {"share": "all"}), ("/app/sign-out", {}),
                       ("/app/contacts", {"q": "camille"})):
        assert browser.post(path, data=data).status_code == 403, path
        assert browser.post(path, data={**data, "csrf": "forged"}).status_code == 403, path
    # with the token, the same request goes through (here: an unknown suggestion)
    answer = browser.post_form("/app/inbox/anything/relay", from_page="/app/inbox")
    assert answer.status_code == 404 and "no such suggestion" in answer.text
    # a token from another session does not work either
    other = signed_in(client, "Bob", "bob@benevoles.example")
    stolen = csrf_of(other.get("/app/inbox").text)
    assert browser.post("/app/lang", data={"lang": "en", "csrf": stolen}).status_code == 403


def test_security_headers_and_no_inline_script(client):
    browser = signed_in(client)
    for path in (*PAGES, "/join", "/app/sign-in"):
        page = browser.get(path)
        assert page.status_code == 200, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), f"inline script in {path}"
        assert " style=" not in page.text and "<style" not in page.text, f"inline style in {path}"
        assert re.search(r'<html lang="(fr|en)">', page.text)
        for field in re.findall(r'<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"', page.text):
            assert f'for="{field}"' in page.text or "aria-label" in page.text, f"{path}: #{field} has no label"


def test_language_from_the_browser_then_switched_by_a_cookie(client):
    browser = signed_in(client)
    assert '<html lang="fr">' in browser.get("/app/inbox").text  # no preference: French
    english = browser.get("/app/inbox", headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
    assert '<html lang="en">' in english.text and "Messages to relay" in english.text
    switched = browser.post_form("/app/lang", {"lang": "fr", "next": "/app/contacts"}, from_page="/app/inbox")
    assert switched.status_code == 303 and switched.headers["location"] == "/app/contacts"
    french = browser.get("/app/inbox", headers={"Accept-Language": "en"})
    assert '<html lang="fr">' in french.text and "Messages à relayer" in french.text
    away = browser.post_form("/app/lang", {"lang": "en", "next": "https://evil.example/"}, from_page="/app/inbox")
    assert away.headers["location"] == "/app/", "no redirect off the site"
    bad = browser.post_form("/app/lang", {"lang": "de"}, from_page="/app/inbox")
    assert bad.status_code == 422 and "lang: one of fr, en" in bad.text


CSV = ("First Name,Last Name,E-mail Address,Categories\n"
       "Camille,Durand,camille.durand@exemple.fr,education\n"
       "Louis,Petit,louis.petit@exemple.fr,seniors\n"
       "Sans,Adresse,pas-une-adresse,transport\n")


def test_import_edit_consent_tag_export_delete(client):
    browser = signed_in(client)
    report = browser.get(import_file(browser, CSV))
    assert "3 lignes : 2 importées, 0 fusionnées, 0 inchangées, 1 refusées" in report.text
    assert "pas-une-adresse" in report.text  # the rejected row keeps its text
    ids = contact_ids(browser)
    assert set(ids) == {"Camille Durand", "Louis Petit"}
    camille = f"/app/contacts/{ids['Camille Durand']}"

    # a bad edit names the field and keeps the page
    bad = browser.post_form(camille, {"name": "Camille Durand", "emails": "pas une adresse"}, from_page=camille)
    assert bad.status_code == 422 and "emails" in bad.text
    good = browser.post_form(camille, {"name": "Camille Durand-Roy", "emails": "camille.durand@exemple.fr",
                                       "interests": "education, transport", "tags": "voisine"}, from_page=camille)
    assert good.status_code == 303
    page = browser.get(camille).text
    assert 'value="Camille Durand-Roy"' in page and "education, transport" in page

    # confirming needs a proof; then the consent is confirmed
    no_proof = browser.post_form(f"{camille}/consent", {"state": "confirmed"}, from_page=camille)
    assert no_proof.status_code == 422 and "state" in no_proof.text
    assert browser.post_form(f"{camille}/consent", {"state": "confirmed", "proof": "oui au marché"},
                             from_page=camille).status_code == 303
    assert 'badge confirmed' in browser.get(camille).text

    # bulk tag both, then filter by consent and interest
    tagged = browser.post_form("/app/contacts/bulk-tag", {"ids": list(ids.values()), "words": "quartier",
                                                          "kind": "tag", "action": "add"}, from_page="/app/contacts")
    assert tagged.status_code == 303
    assert browser.get("/app/contacts").text.count("#quartier") == 2
    confirmed = browser.post_form("/app/contacts", {"consent": "confirmed"}, from_page="/app/contacts").text
    assert "Camille Durand-Roy" in confirmed and "Louis Petit" not in confirmed
    assert "Louis Petit" in browser.post_form("/app/contacts", {"interest": "seniors"}, from_page="/app/contacts").text
    found = browser.post_form("/app/contacts", {"q": "lou"}, from_page="/app/contacts")
    assert "Louis Petit" in found.text and "Camille" not in found.text
    assert 'method="get"' not in browser.get("/app/contacts").text, "search words never go in a URL"
    wrong = browser.post_form("/app/contacts", {"consent": "maybe"}, from_page="/app/contacts")
    assert wrong.status_code == 422 and "consent: one of unknown" in wrong.text
    nothing = browser.post_form("/app/contacts/bulk-tag", {"ids": list(ids.values()), "words": ""},
                                from_page="/app/contacts")
    assert nothing.status_code == 422 and "words" in nothing.text

    export = browser.get("/app/contacts/export", params={"format": "csv"})
    assert export.status_code == 200 and "camille.durand@exemple.fr" in export.text
    assert "attachment" in export.headers["content-disposition"]

    # invite Louis (unknown consent): once
    louis = f"/app/contacts/{ids['Louis Petit']}"
    assert browser.post_form(f"{louis}/invite", from_page=louis).status_code == 303
    assert "badge invited" in browser.get(louis).text
    twice = browser.post_form(f"{louis}/invite", from_page=louis)
    assert twice.status_code == 409 and "an invitation is sent once" in twice.text

    assert browser.post_form(f"{louis}/delete", from_page=louis).status_code == 303
    assert browser.get(louis).status_code == 404
    assert set(contact_ids(browser)) == {"Camille Durand-Roy"}


def test_a_volunteer_cannot_reach_another_volunteers_pages(client):
    alice, bob = signed_in(client), signed_in(client, "Bob", "bob@benevoles.example")
    report = import_file(alice, CSV)
    camille = f"/app/contacts/{contact_ids(alice)['Camille Durand']}"
    assert bob.get(camille).status_code == 404
    assert bob.get(f"{camille}/export").status_code == 404
    assert bob.post_form(camille, {"name": "pwned", "emails": "x@exemple.fr"}, from_page="/app/inbox").status_code == 404
    assert bob.post_form(f"{camille}/delete", from_page="/app/inbox").status_code == 404
    assert bob.get(report).status_code == 404 and bob.get(f"{report}/status").status_code == 404
    assert "Camille" not in bob.get("/app/contacts").text
    assert "Camille" not in bob.get("/app/contacts/export", params={"format": "json"}).text
    assert alice.get(camille).status_code == 200  # untouched


def test_interests_and_networks_forms(client):
    browser = signed_in(client)
    import_file(browser, CSV)
    shared = browser.post_form("/app/interests", {"share": "some", "interests": ["education"]},
                               from_page="/app/interests")
    assert shared.status_code == 303
    page = browser.get("/app/interests").text
    assert re.search(r'value="education" checked', page) and not re.search(r'value="seniors" checked', page)
    bad = browser.post_form("/app/interests", {"share": "some", "interests": ["pas un mot!"]},
                            from_page="/app/interests")
    assert bad.status_code == 422 and "shared_interests" in bad.text

    nets = browser.get("/app/networks").text
    for field in ("mastodon-instance_url", "mastodon-access_token", "bluesky-app_password", "x-access_token"):
        assert f'id="{field}"' in nets
    assert 'type="password" id="bluesky-app_password"' in nets
    refused = browser.post_form("/app/networks/bluesky", {"handle": "alice.bsky.social", "app_password": "hunter2"},
                                from_page="/app/networks")
    assert refused.status_code == 422 and "app_password" in refused.text and "hunter2" not in refused.text
    ok = browser.post_form("/app/networks/mastodon", {"instance_url": "https://mastodon.example",
                                                      "access_token": "secret-token-123", "handle": "@alice@mastodon.example"},
                           from_page="/app/networks")
    assert ok.status_code == 303
    nets = browser.get("/app/networks").text
    assert "@alice@mastodon.example" in nets and "secret-token-123" not in nets
    assert browser.post_form("/app/networks/mastodon/disconnect", from_page="/app/networks").status_code == 303
    assert "@alice@mastodon.example" not in browser.get("/app/networks").text
    assert browser.post_form("/app/networks/myspace", {"handle": "x"}, from_page="/app/networks").status_code == 422


def test_the_next_page_carries_the_filters_by_post(client):
    browser = signed_in(client)
    rows = "".join(f"Ami,{i:02d},ami{i:02d}@exemple.fr,education\n" for i in range(60))
    import_file(browser, "First Name,Last Name,E-mail Address,Categories\n" + rows)
    first = browser.post_form("/app/contacts", {"q": "ami"}, from_page="/app/contacts").text
    assert len(contact_ids_in(first)) == 50 and "60 contact(s)" in first
    assert re.search(r"<title>([^<]*)</title>", first), "the next-page form belongs in the page, not its title"
    assert first.count('name="cursor"') == 1
    cursor = re.search(r'name="cursor" value="([^"]+)"', first).group(1)
    second = browser.post_form("/app/contacts", {"q": "ami", "cursor": cursor}, from_page="/app/contacts").text
    assert len(contact_ids_in(second)) == 10 and not set(contact_ids_in(first)) & set(contact_ids_in(second))
    assert 'name="cursor"' not in second, "the last page has no next page"
