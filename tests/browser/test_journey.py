"""The journey of issue 6 in real headless Chromium, every service its own
process: a staff member signs in to the console and sets the taxonomy; a
volunteer opens their invitation link, imports a file, confirms a
contact's consent; the staff member composes (live counters) and
publishes; the volunteer sees the suggestion, relays it in one click (by
keyboard), opens a share link, and the personal email lands in the SMTP
sink; the volunteer's history and the staff's live dashboard show it.
Every page is photographed at 360 and 1280 px and checked for sideways
scrolling, CSP violations and script errors."""

from __future__ import annotations

import email
import email.policy
import re
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.support.pages import check_and_shoot, watch_console
from tests.support.waiting import poll

CSV = ("First Name,Last Name,E-mail Address,Categories\n"
       "Camille,Durand,camille.durand@exemple.fr,education\n"
       "Louis,Petit,louis.petit@exemple.fr,seniors\n"
       "Sans,Adresse,pas-une-adresse,transport\n")
TAXONOMY = "education | Éducation | Education\ntransport | Transports | Transport\nseniors | Aînés | Seniors"


def mail_to(folder: Path, address: str) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted(folder.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if any(a.addr_spec == address for a in msg["To"].addresses):
            found.append(msg)
    return found


def reload_until(page, text: str, what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in page.content():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {text!r} never showed on {page.url}")
        page.wait_for_timeout(500)
        page.reload()


def test_publish_sign_in_import_relay_and_the_email_arrives(stack, chromium, shots, tmp_path):
    cfg = stack.cfg
    console, app = cfg.url("feed"), cfg.url("contacts")

    # -- staff: sign in (English), set the taxonomy ------------------------------------------
    staff_ctx = chromium.new_context(locale="en-GB")
    staff = staff_ctx.new_page()
    staff_errors = watch_console(staff)
    staff.goto(f"{console}/console/")
    assert staff.url.endswith("/console/sign-in")
    check_and_shoot(staff, shots, "console-sign-in")
    staff.get_by_label("Staff token").fill(cfg.staff_token)
    staff.get_by_role("button", name="Sign in").click()
    staff.wait_for_url("**/console/messages")
    staff.goto(f"{console}/console/taxonomy")
    staff.get_by_label("Replace the list").fill(TAXONOMY)
    staff.get_by_role("button", name="Publish the list").click()
    expect(staff.locator("td code", has_text="seniors")).to_have_count(1)
    check_and_shoot(staff, shots, "console-taxonomy")

    # -- volunteer: the invitation link (French) ----------------------------------------------
    invite = httpx.post(f"{app}/admin/invites", json={"display_name": "Alice Martin", "email": "alice@benevoles.example"},
                        headers={"Authorization": f"Bearer {cfg.provisioning_token}"}).json()
    vol_ctx = chromium.new_context(locale="fr-FR")
    vol = vol_ctx.new_page()
    vol_errors = watch_console(vol)
    vol.goto(invite["invite_url"])
    vol.wait_for_url("**/app/inbox")
    assert invite["code"] not in vol.url and "#" not in vol.url
    assert vol.evaluate("() => localStorage.length + sessionStorage.length") == 0
    session = [c for c in vol_ctx.cookies() if c["name"] == "maillage_volunteer"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    assert invite["code"] not in session[0]["value"]
    assert vol.evaluate("() => document.cookie") == "", "no cookie is readable by page scripts"
    check_and_shoot(vol, shots, "app-inbox-empty")

    # the campaign's interests reached contacts (the import maps categories to them)
    vol.goto(f"{app}/app/contacts")
    reload_until(vol, 'value="seniors"', "the taxonomy in the contacts filter")

    # -- volunteer: import a file, with the progress bar and the report ------------------------
    vol.goto(f"{app}/app/import")
    check_and_shoot(vol, shots, "app-import")
    csv = tmp_path / "mes-contacts.csv"
    csv.write_text(CSV, encoding="utf-8")
    vol.get_by_label("Fichier").set_input_files(str(csv))
    vol.get_by_role("button", name="Importer").click()
    vol.wait_for_url("**/app/imports/*")
    # the page reloads itself when the import ends, with the row-by-row report
    expect(vol.get_by_text("Sans,Adresse,pas-une-adresse,transport")).to_have_count(1)
    vol.get_by_text("3 lignes : 2 importées, 0 fusionnées, 0 inchangées, 1 refusées").wait_for()
    assert vol.locator("progress").get_attribute("value") == "100"
    check_and_shoot(vol, shots, "app-import-report")

    # -- volunteer: the contacts, one contact's consent ---------------------------------------
    vol.goto(f"{app}/app/contacts")
    assert vol.get_by_text("2 contact(s)").count() == 1
    check_and_shoot(vol, shots, "app-contacts")
    vol.get_by_role("link", name="Camille Durand").click()
    vol.get_by_label("Comment et quand il ou elle a dit oui").fill("oui au marché le 12/11")
    vol.get_by_role("button", name="Confirmer son accord").click()
    vol.locator(".badge.confirmed").wait_for()
    check_and_shoot(vol, shots, "app-contact")

    vol.goto(f"{app}/app/interests")
    assert vol.get_by_text("Éducation — 1 contact(s) d'accord").count() == 1
    check_and_shoot(vol, shots, "app-interests")
    vol.goto(f"{app}/app/networks")
    check_and_shoot(vol, shots, "app-networks")

    # -- staff: compose with live counters, publish --------------------------------------------
    staff.goto(f"{console}/console/compose")
    staff.get_by_label("Title").fill("Nos écoles méritent mieux")
    staff.get_by_label("Text (Markdown)").fill("Réunion **publique** sur la rénovation des écoles, le 12 décembre.")
    staff.get_by_label("Link (the campaign's page)").fill("https://campagne.example/ecoles")
    staff.get_by_label("Education", exact=True).check()
    staff.get_by_label("Subject").fill("Réunion publique sur nos écoles")
    staff.get_by_label("Email text (each volunteer sends it in their own name)").fill(
        "Le 12 décembre à 19 h, salle des fêtes : venez parler des écoles.")
    staff.get_by_label("Short text (the link is added)").fill("Réunion publique sur nos écoles le 12/12 🎉")
    # X counts the link as 23 and the emoji as 2 (the counters wait for the server's answer)
    x_count = 23 + 1 + len("Réunion publique sur nos écoles le 12/12 ") + 2
    expect(staff.locator('#counters [data-network="X"] .counter')).to_have_text(str(x_count))
    expect(staff.locator("#preview-body strong")).to_have_text("publique")
    check_and_shoot(staff, shots, "console-compose")
    staff.get_by_role("button", name="Publish", exact=True).click()
    staff.wait_for_url(re.compile(r".*/console/messages/[0-9a-f]+$"))
    staff.locator(".badge.published").first.wait_for()
    message_url = staff.url

    # -- volunteer: the suggestion, one click (by keyboard), the result per channel -------------
    vol.goto(f"{app}/app/inbox")
    reload_until(vol, "Relayer sur tous mes réseaux", "the suggestion in the inbox")
    assert vol.get_by_text("Concerne 1 de vos contacts : Éducation").count() == 1
    vol.keyboard.press("Tab")
    assert vol.evaluate("() => document.activeElement.className") == "skip", "the first Tab reaches the skip link"
    vol.get_by_text("Voir ce qui partira, canal par canal").click()
    check_and_shoot(vol, shots, "app-inbox")
    vol.get_by_label("Un mot de vous (facultatif), en tête de chaque courriel").fill("Viens, c'est important !")
    vol.get_by_role("button", name="Relayer sur tous mes réseaux").focus()
    vol.keyboard.press("Enter")
    vol.wait_for_url("**/app/relays/*")
    email_card = vol.locator('[data-channel="email"]')
    assert email_card.locator('[data-field="queued"]').text_content() == "1"

    # a share link opens the network's prefilled page (answered locally: no internet here)
    vol_ctx.route("https://www.facebook.com/**", lambda route: route.fulfill(body="<p>shared</p>",
                                                                           content_type="text/html"))
    with vol_ctx.expect_page() as popup:
        vol.get_by_role("link", name="Partager sur Facebook").click()
    popup.value.wait_for_load_state()
    assert popup.value.url.startswith("https://www.facebook.com/sharer/sharer.php?u=")
    popup.value.close()

    # -- the email arrives in the SMTP server -------------------------------------------------
    mails = poll(lambda: mail_to(cfg.var / "mail", "camille.durand@exemple.fr"), bool, timeout=30,
                 what="the email in the SMTP sink")
    assert len(mails) == 1
    mail = mails[0]
    assert mail["From"].addresses[0].display_name == "Alice Martin"
    assert mail["Reply-To"].addresses[0].addr_spec == "alice@benevoles.example"
    assert mail["Subject"] == "Réunion publique sur nos écoles"
    assert "Viens, c'est important !" in mail.get_body(("plain",)).get_content()  # the volunteer's note
    assert not mail_to(cfg.var / "mail", "louis.petit@exemple.fr"), "Louis did not consent and is not interested"

    vol.reload()
    reload_until(vol, "terminé", "the relay done")
    assert email_card.locator('[data-field="delivered"]').text_content() == "1"
    check_and_shoot(vol, shots, "app-relay")
    vol.goto(f"{app}/app/history")
    assert vol.get_by_text("distribués : 1").count() == 1
    check_and_shoot(vol, shots, "app-history")

    # -- staff: the live dashboard, the list --------------------------------------------------
    staff.goto(message_url)
    staff.locator("#live", has_text="live").wait_for()
    # one volunteer is under k = 5: every figure is hidden, drawn as "< 5", never as 1
    assert "email: < 5" in staff.locator("#legend-time").text_content()
    assert staff.locator("#chart-interest rect").count() >= 3 and "< 5" in staff.locator("#chart-interest").text_content()
    assert "volunteers asked < 5" in staff.locator("#dashboard .card").first.text_content()
    check_and_shoot(staff, shots, "console-message")
    staff.goto(f"{console}/console/messages")
    check_and_shoot(staff, shots, "console-messages")

    # the staff member's session opens nothing in the volunteers' app
    staff.goto(f"{app}/app/contacts")
    assert staff.url.endswith("/app/sign-in")
    check_and_shoot(staff, shots, "app-sign-in")

    assert not vol_errors, vol_errors
    assert not staff_errors, staff_errors
    vol_ctx.close()
    staff_ctx.close()
