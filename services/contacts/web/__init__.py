"""The volunteer's web app, served by contacts at /app/: sign in through
the invitation link, the inbox and its one-click relay, the contact book
and its imports, networks, interests, history. Pages call the same use
cases as the API (services/contacts/usecases), so the rules (scoping,
consent, taxonomy) and the refusals are the API's."""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi import FastAPI

from services.contacts.api.deps import contacts_authenticator
from services.contacts.settings import ContactsSettings
from services.contacts.web import auth, book, history, imports, inbox, networks, profile
from shared.auth import hash_token
from shared.web.pages import Site, install as install_site
from shared.web.session import Sessions, derive_key

HERE = Path(__file__).parent
PREFIX = "/app"
PUBLIC_PREFIXES = (f"{PREFIX}/", "/join")  # these pages check the session themselves
NAV = (("/inbox", "nav.inbox"), ("/contacts", "nav.contacts"), ("/networks", "nav.networks"),
       ("/interests", "nav.interests"), ("/history", "nav.history"))


def install(app: FastAPI, settings: ContactsSettings) -> None:
    key = derive_key(base64.b64decode(settings.link_key.get_secret_value()), "contacts")
    sessions = Sessions(key, cookie="maillage_volunteer", path="/", secure=settings.cookie_secure,
                        max_age=settings.session_hours * 3600)
    # the token form signs in exactly as the API authenticates
    app.state.authenticate = contacts_authenticator(
        app.state.engine, hash_token(settings.provisioning_token.get_secret_value()))
    install_site(app, Site.at(PREFIX, HERE, NAV), sessions,
                 [auth.router, inbox.router, book.router, imports.router, networks.router, profile.router,
                  history.router], HERE / "static", end_sessions=auth.end_sessions)
