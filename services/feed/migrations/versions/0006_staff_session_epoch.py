"""console sessions end on sign-out everywhere: an epoch per staff account
(the bootstrap admin included)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:05:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staffsessionepoch',
    sa.Column('actor_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('actor_id')
    )


def downgrade() -> None:
    op.drop_table('staffsessionepoch')
