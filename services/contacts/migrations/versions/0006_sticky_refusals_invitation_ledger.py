"""a refusal holds for the address campaign-wide, one invitation per
address: the invitation ledger (keyed hashes), refusals already given
become suppressions, and the relays' skip counts lose their per-address
reasons

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:30:00
"""

import hashlib
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

NEUTRAL = ("suppressed", "already_received", "over_cap")  # became one "unreachable" count


def claim_of(contact_id: str) -> str:
    # as services.contacts.book.invitation_claim: a migration keeps its own copy
    return hashlib.sha256(f"invitation-claim:{contact_id}".encode()).hexdigest()[:32]


def upgrade() -> None:
    op.create_table('invitationsent',
        sa.Column('blind', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('claim', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('blind'),
    )
    conn = op.get_bind()
    meta = sa.MetaData()
    consent = sa.Table('consentrecord', meta, autoload_with=conn)
    address = sa.Table('contactaddress', meta, autoload_with=conn)
    suppression = sa.Table('suppression', meta, autoload_with=conn)
    ledger = sa.Table('invitationsent', meta, autoload_with=conn)
    relay = sa.Table('relay', meta, autoload_with=conn)
    joined = consent.join(address, sa.and_(address.c.contact_id == consent.c.contact_id,
                                           address.c.kind == 'email'))

    # Invitations sent before: every email address of an invited contact
    # (which one got it is sealed in the book; all of them is the safe side).
    seen: set[str] = set()
    rows = []
    for contact_id, blind, at in conn.execute(
            sa.select(consent.c.contact_id, address.c.blind, consent.c.invited_at).select_from(joined)
            .where(consent.c.channel == 'email', consent.c.invited_at.is_not(None))
            .order_by(consent.c.invited_at)):
        if blind not in seen:
            seen.add(blind)
            rows.append({'blind': blind, 'claim': claim_of(contact_id), 'at': at})
    if rows:
        conn.execute(ledger.insert(), rows)

    # A "no" given on the consent page (withdrawn by the contact) now holds
    # for the address in every book.
    suppressed = set(conn.execute(sa.select(suppression.c.blind)).scalars())
    refused = {blind for blind in conn.execute(
        sa.select(address.c.blind).select_from(joined)
        .where(consent.c.channel == 'email', consent.c.state == 'withdrawn', consent.c.source == 'contact')
    ).scalars()} - suppressed
    if refused:
        now = datetime.now(timezone.utc)
        conn.execute(suppression.insert(), [{'blind': b, 'reason': 'refused', 'created_at': now}
                                            for b in sorted(refused)])

    # Relays already made: what the volunteer reads loses the reasons.
    for relay_id, skipped in conn.execute(sa.select(relay.c.id, relay.c.skipped)).all():
        if skipped and any(k in skipped for k in NEUTRAL):
            counts = {k: v for k, v in skipped.items() if k not in NEUTRAL}
            counts['unreachable'] = sum(skipped.get(k, 0) for k in NEUTRAL)
            conn.execute(relay.update().where(relay.c.id == relay_id).values(skipped=counts))


def downgrade() -> None:
    # the refusals stay suppressions: going back must not open an address
    op.drop_table('invitationsent')
