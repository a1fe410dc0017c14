"""baseline: the feed schema from before migrations (messages and facts)

Revision ID: 0001
Revises:
Create Date: 2026-11-24 10:00:00

A database created by that earlier code is stamped at this revision when
feed starts (services/feed/store.py ``create_schema``), then upgraded.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deliveryfact',
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('job_id')
    )
    with op.batch_alter_table('deliveryfact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveryfact_message_id'), ['message_id'], unique=False)

    op.create_table('message',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('interests', sa.JSON(), nullable=False),
    sa.Column('variants', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('published_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    op.create_table('relayfact',
    sa.Column('relay_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('emails_queued', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('relay_id')
    )
    with op.batch_alter_table('relayfact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_relayfact_message_id'), ['message_id'], unique=False)

    op.create_table('suggestionfact',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('volunteer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('audience_size', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('message_id', 'volunteer_id')
    )


def downgrade() -> None:
    op.drop_table('suggestionfact')
    with op.batch_alter_table('relayfact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_relayfact_message_id'))

    op.drop_table('relayfact')
    op.drop_table('message')
    with op.batch_alter_table('deliveryfact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveryfact_message_id'))

    op.drop_table('deliveryfact')
