"""staff figures move only when k more volunteers contributed: facts keep when
they were recorded, and what staff were shown is kept (reachshown)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:20:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

FACTS = ('suggestionfact', 'relayfact', 'deliveryfact')


def upgrade() -> None:
    # Facts recorded before this revision have no time: the staff report
    # counts them as the oldest, shown or not by the first report.
    for table in FACTS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_table('reachshown',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )


def downgrade() -> None:
    op.drop_table('reachshown')
    for table in FACTS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('recorded_at')
