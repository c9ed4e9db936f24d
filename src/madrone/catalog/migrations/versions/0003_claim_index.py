"""The claim's index: only queued jobs, in claim order (priority high to low, then oldest),
so a claim reads one index entry however many jobs have run before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")
CLAIM_ORDER = [sa.text("priority DESC"), "created_at", "id"]


def upgrade() -> None:
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.create_index(
        "ix_jobs_queued", "jobs", CLAIM_ORDER, postgresql_where=QUEUED, sqlite_where=QUEUED
    )
    op.create_index("ix_jobs_running_lease", "jobs", ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_running_lease", table_name="jobs")
    op.drop_index("ix_jobs_queued", table_name="jobs")
    op.create_index("ix_jobs_claim", "jobs", ["status", "priority", "created_at"])
