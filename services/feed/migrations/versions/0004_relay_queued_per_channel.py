"""jobs queued per relay and channel, a row per channel (X and any later network need no column)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 13:50:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

OLD_COLUMNS = {"email": "emails_queued", "mastodon": "mastodon_queued", "bluesky": "bluesky_queued"}


def upgrade() -> None:
    op.create_table('relayqueued',
    sa.Column('relay_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('queued', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('relay_id', 'channel')
    )
    with op.batch_alter_table('relayqueued', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_relayqueued_message_id'), ['message_id'], unique=False)
    for channel, column in OLD_COLUMNS.items():  # keep what was counted
        op.execute(f"INSERT INTO relayqueued (relay_id, channel, message_id, queued) "
                   f"SELECT relay_id, '{channel}', message_id, {column} FROM relayfact WHERE {column} > 0")
    with op.batch_alter_table('relayfact', schema=None) as batch_op:
        for column in OLD_COLUMNS.values():
            batch_op.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table('relayfact', schema=None) as batch_op:
        for column in OLD_COLUMNS.values():
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default='0'))
    for channel, column in OLD_COLUMNS.items():
        op.execute(f"UPDATE relayfact SET {column} = (SELECT queued FROM relayqueued q "
                   f"WHERE q.relay_id = relayfact.relay_id AND q.channel = '{channel}') "
                   f"WHERE EXISTS (SELECT 1 FROM relayqueued q WHERE q.relay_id = relayfact.relay_id "
                   f"AND q.channel = '{channel}')")
    op.drop_table('relayqueued')
