"""delivery facts keep when they happened: the reach timeline

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 14:40:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveryfact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveryfact', schema=None) as batch_op:
        batch_op.drop_column('at')
