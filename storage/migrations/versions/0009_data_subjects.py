"""personal data out of the permanent log: data subjects with their clear values and commitment keys

Revision ID: 0009_data_subjects
Revises: 0008_verify_runs
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009_data_subjects"
down_revision = "0008_verify_runs"
branch_labels = None
depends_on = None


def _str(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "data_subject",
        sa.Column("id", _str(40), nullable=False),
        sa.Column("org_id", _str(40), nullable=False),
        sa.Column("envelope_id", _str(40), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("clear", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.ForeignKeyConstraint(
            ["envelope_id", "org_id"], ["envelope.id", "envelope.org_id"], name="fk_data_subject_envelope_org"
        ),
        sa.PrimaryKeyConstraint("id"),
        # Erased means both gone, never one of them: a key without its values (or values without their key)
        # would be a half-done erasure.
        sa.CheckConstraint(
            "(erased_at IS NULL AND key IS NOT NULL AND clear IS NOT NULL)"
            " OR (erased_at IS NOT NULL AND key IS NULL AND clear IS NULL)",
            name="ck_data_subject_erased",
        ),
    )
    op.create_index("ix_data_subject_org_id", "data_subject", ["org_id"])
    op.create_index("ix_data_subject_envelope_id", "data_subject", ["envelope_id"])


def downgrade() -> None:
    op.drop_table("data_subject")
