"""auto-relay: the shared interests a volunteer relays without a click, and
which relays were made that way (their history says so)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 14:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('volunteer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auto_relay_interests', sa.JSON(), nullable=True))
    with op.batch_alter_table('relay', schema=None) as batch_op:
        # every relay made before this revision was a click
        batch_op.add_column(sa.Column('automatic', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('relay', schema=None) as batch_op:
        batch_op.drop_column('automatic')
    with op.batch_alter_table('volunteer', schema=None) as batch_op:
        batch_op.drop_column('auto_relay_interests')
