"""delivery facts keep the typed outcome of their job, and what it was
before a later report (a bounce after delivery) changed it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:50:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveryfact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('revised_from', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('revised_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveryfact', schema=None) as batch_op:
        batch_op.drop_column('revised_at')
        batch_op.drop_column('revised_from')
        batch_op.drop_column('outcome')
