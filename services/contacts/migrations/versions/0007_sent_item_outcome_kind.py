"""the volunteer's history keeps the typed outcome of each job
(shared.outcomes.OutcomeKind): read through the same meaning as staff's

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:50:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sentitem', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sentitem', schema=None) as batch_op:
        batch_op.drop_column('outcome')
