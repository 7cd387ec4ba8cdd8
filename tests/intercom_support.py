"""Hand-made Intercom records for tests that feed the stand-in exact cases."""

from __future__ import annotations

from health_score_sandbox import intercom


def company(
    intercom_id: str,
    company_id: str,
    name: str,
    created_at: int,
    *,
    segment: str = "standard",
    plan: str = "Standard",
    monthly_spend: int = 100,
) -> intercom.Company:
    """A company as the stand-in serves it (10 users, software industry)."""
    return intercom.Company(
        id=intercom_id,
        company_id=company_id,
        name=name,
        created_at=created_at,
        user_count=10,
        monthly_spend=monthly_spend,
        plan=plan,
        industry="Software",
        segment=segment,
    )
