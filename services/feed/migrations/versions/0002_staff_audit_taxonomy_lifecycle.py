"""staff accounts, audit, taxonomy, message lifecycle and targeting, fact breakdowns

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:05:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auditentry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('actor_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('actor_role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('auditentry', schema=None) as batch_op:
        batch_op.create_index('ix_audit_target', ['target'], unique=False)
        batch_op.create_index(batch_op.f('ix_auditentry_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_auditentry_actor_id'), ['actor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_auditentry_at'), ['at'], unique=False)

    op.create_table('staffaccount',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('revoked_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('suggestioninterest',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('volunteer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('interest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('message_id', 'volunteer_id', 'interest')
    )
    op.create_table('taxonomyversion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('terms', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('announced_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deliveryfact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('volunteer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.create_index('ix_deliveryfact_volunteer', ['message_id', 'volunteer_id'], unique=False)

    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body_html', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('link', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True))
        batch_op.add_column(sa.Column('regions', sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column('locales', sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='draft'))
        batch_op.add_column(sa.Column('publish_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False, server_default=sa.func.now()))
        batch_op.add_column(sa.Column('approved_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('approved_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.create_index('ix_message_due', ['state', 'publish_at'], unique=False)
        batch_op.create_index('ix_message_expiry', ['state', 'expires_at'], unique=False)

    # messages published before the lifecycle existed are published ones
    op.execute("UPDATE message SET updated_at = created_at")
    op.execute("UPDATE message SET state = 'published' WHERE published_at IS NOT NULL")

    with op.batch_alter_table('relayfact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('volunteer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('mastodon_queued', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('bluesky_queued', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index('ix_relayfact_volunteer', ['message_id', 'volunteer_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('relayfact', schema=None) as batch_op:
        batch_op.drop_index('ix_relayfact_volunteer')
        batch_op.drop_column('bluesky_queued')
        batch_op.drop_column('mastodon_queued')
        batch_op.drop_column('volunteer_id')

    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_expiry')
        batch_op.drop_index('ix_message_due')
        batch_op.drop_column('withdrawn_reason')
        batch_op.drop_column('withdrawn_at')
        batch_op.drop_column('approved_at')
        batch_op.drop_column('approved_by')
        batch_op.drop_column('updated_at')
        batch_op.drop_column('created_by')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('publish_at')
        batch_op.drop_column('state')
        batch_op.drop_column('priority')
        batch_op.drop_column('locales')
        batch_op.drop_column('regions')
        batch_op.drop_column('link')
        batch_op.drop_column('body_html')

    with op.batch_alter_table('deliveryfact', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveryfact_volunteer')
        batch_op.drop_column('reason')
        batch_op.drop_column('volunteer_id')

    op.drop_table('taxonomyversion')
    op.drop_table('suggestioninterest')
    op.drop_table('staffaccount')
    with op.batch_alter_table('auditentry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auditentry_at'))
        batch_op.drop_index(batch_op.f('ix_auditentry_actor_id'))
        batch_op.drop_index(batch_op.f('ix_auditentry_action'))
        batch_op.drop_index('ix_audit_target')

    op.drop_table('auditentry')
