"""Policy history: every policy version that decided something, when it was in use, its text, and
what changed between two versions.

The text of a version is stored the first time a process decides under it
(:mod:`airflow_policyzones.db.chain`); first and last use come from the decisions themselves (an
index on ``policy_version``), so they are exact. Versions that decided before the history was kept
are listed too, without text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError
from sqlalchemy import func, select

from airflow_policyzones.db.models import PolicyZonesDecision, PolicyZonesPolicyVersion
from airflow_policyzones.policy.diff import PolicyDiff, diff_policies
from airflow_policyzones.policy.models import Policy

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class UnknownVersion(LookupError):
    """A version given by the user names no stored version (or several): the message says which exist."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyVersionUse:
    """One policy version and its use."""

    version: str
    first_used_at: datetime
    last_used_at: datetime
    decisions: int
    """Decisions recorded under it (now: rows may have been deleted since)."""
    source: str | None
    stored: bool
    """Whether its text is stored (versions used before the history was kept are not)."""

    @property
    def short(self) -> str:
        return short_version(self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "first_used_at": self.first_used_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat(),
            "decisions": self.decisions,
            "source": self.source,
            "text_stored": self.stored,
        }


def short_version(version: str) -> str:
    """The 12 hex digits people quote (as ``policyzones status`` shows them)."""
    return version.removeprefix("sha256:")[:12]


def policy_versions(*, session: Session) -> list[PolicyVersionUse]:
    """Every version that decided something, oldest first use first."""
    decision = PolicyZonesDecision
    used = {
        version: (first, last, count)
        for version, first, last, count in session.execute(
            select(
                decision.policy_version,
                func.min(decision.decided_at),
                func.max(decision.decided_at),
                func.count(),
            ).group_by(decision.policy_version)
        )
    }
    stored = {
        row.version: row
        for row in session.execute(
            select(
                PolicyZonesPolicyVersion.version,
                PolicyZonesPolicyVersion.source,
                PolicyZonesPolicyVersion.first_used_at,
                PolicyZonesPolicyVersion.last_used_at,
            )
        )
    }
    uses = []
    for version in {*used, *stored}:
        first, last, count = used.get(version, (None, None, 0))
        kept = stored.get(version)
        firsts = [moment for moment in (first, kept.first_used_at if kept else None) if moment is not None]
        lasts = [moment for moment in (last, kept.last_used_at if kept else None) if moment is not None]
        uses.append(
            PolicyVersionUse(
                version=version,
                first_used_at=min(firsts),
                last_used_at=max(lasts),
                decisions=count,
                source=kept.source if kept else None,
                stored=kept is not None,
            )
        )
    return sorted(uses, key=lambda use: (use.first_used_at, use.version))


def resolve(*, versions: list[PolicyVersionUse], given: str) -> PolicyVersionUse:
    """The version ``given`` names: in full, or a prefix of its hex digits (at least 6)."""
    wanted = given.strip().removeprefix("sha256:").lower()
    matches = (
        [use for use in versions if use.version.removeprefix("sha256:").startswith(wanted)]
        if len(wanted) >= 6
        else []
    )
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(use.short for use in versions) or "none (nothing was decided yet)"
    if not matches:
        raise UnknownVersion(
            f"no policy version {given!r} decided anything here: give one of {known} "
            "(at least 6 hex digits; `policyzones policy-history` lists them)"
        )
    raise UnknownVersion(f"{given!r} matches {len(matches)} versions ({known}): give more hex digits")


def policy_text(*, session: Session, version: str) -> str | None:
    """The stored text of ``version`` (``None``: used before the history was kept)."""
    return session.scalar(
        select(PolicyZonesPolicyVersion.text).where(PolicyZonesPolicyVersion.version == version)
    )


def parse_text(text: str, *, version: str) -> Policy:
    """A stored text as a policy model (without the reference checks: an old version's exemptions
    may have expired since, which must not keep its text from being compared)."""
    try:
        return Policy.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as error:
        first = str(error).splitlines()[0]
        raise UnknownVersion(
            f"the stored text of {short_version(version)} does not read as a policy ({first}): "
            "show it with --show and compare by hand"
        ) from None


def diff_versions(*, session: Session, old: PolicyVersionUse, new: PolicyVersionUse) -> PolicyDiff:
    """What changed from ``old`` to ``new`` (zones, categories, catalog, flows, exemptions...)."""
    texts = []
    for use in (old, new):
        text = policy_text(session=session, version=use.version)
        if text is None:
            raise UnknownVersion(
                f"the text of {use.short} is not stored: it decided before the policy history was kept "
                "(migration f2a9c4e7b130); compare against a version used since"
            )
        texts.append(parse_text(text, version=use.version))
    return diff_policies(old=texts[0], new=texts[1])


def previous_of(versions: list[PolicyVersionUse], use: PolicyVersionUse) -> PolicyVersionUse | None:
    """The stored version first used before ``use`` (what "diff vs previous" compares against)."""
    earlier = [item for item in versions if item.stored and item.first_used_at < use.first_used_at]
    return earlier[-1] if earlier else None
