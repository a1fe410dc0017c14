"""The social half of a relay: one post job per account the volunteer
connected, and share links for the networks without an open API. The
email half is ``relaying``."""

from __future__ import annotations

from sqlmodel import Session

from services.contacts import domain, networks
from services.contacts.book import Book
from services.contacts.relay.share_links import share_links
from services.contacts.store import CampaignMessage, SentItem
from shared.events import Channel, SocialPostJob
from shared.sealed import TransitKeys, seal_post


def post_text(msg: CampaignMessage) -> str:
    """The short variant staff wrote for networks; a message without one
    goes out as its title (feed checks a short variant's length, not a
    title's: the dispatchers cut it to each network's limit)."""
    return msg.short_text or msg.title


def plan_posts(session: Session, book: Book, msg: CampaignMessage, relay_id: str,
               sealer: TransitKeys) -> list[tuple[Channel, SocialPostJob]]:
    """One job per connected account, its credentials sealed for that job
    only with that network's own key, and the volunteer's history row for it (kept if a retried click
    finds it already there: a result may have arrived)."""
    jobs = []
    for channel, creds in networks.connected_credentials(session, book).items():
        jid = domain.job_id(relay_id, book.volunteer_id, channel)
        jobs.append((channel, seal_post(
            creds, sealer[channel], job_id=jid, relay_id=relay_id, message_id=msg.message_id,
            volunteer_id=book.volunteer_id, text=post_text(msg), link=msg.link)))
        if session.get(SentItem, jid) is None:
            session.add(SentItem(job_id=jid, relay_id=relay_id, contact_id=None, message_id=msg.message_id,
                                 channel=channel.value, status="queued"))
    return jobs


def links_for(msg: CampaignMessage, posted_on: set[str]) -> dict[str, str]:
    """Share links, except where the relay posts for the volunteer (X with a token)."""
    return {name: url for name, url in share_links(post_text(msg), msg.link).items() if name not in posted_on}
