"""message lifecycle, suggestion score, taxonomy

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:29:58.541457
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the column types autogenerate names


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('taxonomyterm',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('label_fr', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('label_en', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('campaignmessage', schema=None) as batch_op:
        # existing rows get the defaults the models give new ones
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))

    with op.batch_alter_table('inboxitem', schema=None) as batch_op:
        batch_op.add_column(sa.Column('score', sa.Float(), nullable=False, server_default='0'))



def downgrade() -> None:
    with op.batch_alter_table('inboxitem', schema=None) as batch_op:
        batch_op.drop_column('score')

    with op.batch_alter_table('campaignmessage', schema=None) as batch_op:
        batch_op.drop_column('withdrawn_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('priority')

    op.drop_table('taxonomyterm')
