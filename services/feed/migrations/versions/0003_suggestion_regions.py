"""suggestion regions: the per-region reach breakdown

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 13:30:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('suggestionregion',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('volunteer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('region', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.PrimaryKeyConstraint('message_id', 'volunteer_id', 'region')
    )


def downgrade() -> None:
    op.drop_table('suggestionregion')
