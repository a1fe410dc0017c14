"""social networks: connected accounts, the short variant and link of each
message, and why a sent item failed

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 14:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('networkaccount',
    sa.Column('volunteer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('network', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.Column('connected_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['volunteer_id'], ['volunteer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('volunteer_id', 'network')
    )
    with op.batch_alter_table('campaignmessage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('short_text', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('link', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True))
    with op.batch_alter_table('sentitem', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sentitem', schema=None) as batch_op:
        batch_op.drop_column('reason')
    with op.batch_alter_table('campaignmessage', schema=None) as batch_op:
        batch_op.drop_column('link')
        batch_op.drop_column('short_text')
    op.drop_table('networkaccount')
