"""The policy schema: what a privacy team writes in ``policy.yaml``.

Pydantic models with unknown keys forbidden. Structural checks live here; checks that need the
whole policy (a zone naming an unknown category, a flow naming an unknown zone, ...) are in
:mod:`airflow_policyzones.policy.references` so that each issue can carry its own field path.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_policyzones.policy.patterns import check_glob, check_regex
from airflow_policyzones.policy.vocabulary import Mode, Namespace

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
"""Category, zone, purpose and reclassifier names: a letter, then letters, digits, ``_`` or ``-``."""

UnlabeledBehaviour = Literal["deny", "allow"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Category(_Model):
    """A kind of data (Meta's *data annotation*), e.g. ``purchase_events``."""

    description: str = ""


class CatalogEntry(_Model):
    """Labels for every asset URI or table name that matches one pattern.

    Exactly one of ``uri``, ``table``, ``uri_regex`` or ``table_regex``. Globs match segment by
    segment (``/`` separates URI segments, ``.`` separates table name parts): ``*`` and ``?``
    stay inside one segment, ``**`` spans any number of whole segments.
    """

    uri: str | None = None
    table: str | None = None
    uri_regex: str | None = None
    table_regex: str | None = None
    categories: list[Name] = Field(default_factory=list)
    consented: list[Name] = Field(default_factory=list)
    aggregated: bool = False
    origin_zones: list[Name] = Field(default_factory=list)
    description: str = ""

    @model_validator(mode="after")
    def _exactly_one_pattern(self) -> CatalogEntry:
        given = [k for k in ("uri", "table", "uri_regex", "table_regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'uri', 'table', 'uri_regex' or 'table_regex' "
                f"(found {', '.join(given) if given else 'none'})"
            )
        return self

    @field_validator("uri")
    @classmethod
    def _valid_uri_glob(cls, value: str | None) -> str | None:
        if value is not None:
            check_glob(value, separator="/")
        return value

    @field_validator("table")
    @classmethod
    def _valid_table_glob(cls, value: str | None) -> str | None:
        if value is not None:
            check_glob(value, separator=".")
        return value

    @field_validator("uri_regex", "table_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            check_regex(value)
        return value

    @property
    def namespace(self) -> Namespace:
        return "asset" if self.uri is not None or self.uri_regex is not None else "table"

    @property
    def pattern(self) -> str:
        for value in (self.uri, self.table, self.uri_regex, self.table_regex):
            if value is not None:
                return value
        raise AssertionError("validated entry has a pattern")  # pragma: no cover

    @property
    def is_regex(self) -> bool:
        return self.uri_regex is not None or self.table_regex is not None


class Members(_Model):
    """Which DAGs may run tasks in a zone: any DAG that matches one selector."""

    dag_ids: list[str] = Field(default_factory=list, description="DAG id globs, e.g. 'ads_*'")
    tags: list[str] = Field(default_factory=list, description="a DAG with any of these tags")
    owners: list[str] = Field(default_factory=list, description="a task owned by any of these owners")
    files: list[str] = Field(
        default_factory=list,
        description="DAG file path globs relative to the DAG folder, e.g. 'ads/*' (the strongest selector)",
    )

    @field_validator("dag_ids", "files")
    @classmethod
    def _valid_globs(cls, values: list[str]) -> list[str]:
        for value in values:
            check_glob(value)
        return values

    @property
    def is_empty(self) -> bool:
        return not (self.dag_ids or self.tags or self.owners or self.files)


class Zone(_Model):
    """A context with one purpose, the data allowed in it and who may run in it."""

    purpose: Name
    description: str = ""
    allowed_categories: list[Name] = Field(default_factory=list)
    unlabeled: UnlabeledBehaviour = "deny"
    requires_consent: bool = False
    aggregated_only: bool = False
    inflows: list[Name] = Field(
        default_factory=list, description="zones whose data may flow in without a reclassifier"
    )
    mode: Mode = "enforce"
    members: Members = Field(default_factory=Members)


class Flow(_Model):
    """A sanctioned path ``from`` → ``to``; with ``via``, only through those reclassifiers."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: Name = Field(alias="from")
    target: Name = Field(alias="to")
    via: list[Name] = Field(default_factory=list)
    description: str = ""


class ReclassifiedLabels(_Model):
    """The labels a reclassifier's outputs get, replacing what its inputs carried."""

    categories: list[Name] | None = Field(default=None, description="omit to keep the input categories")
    consented: list[Name] = Field(default_factory=list)
    aggregated: bool = False


class Reclassifier(_Model):
    """A named, reviewed task that legitimately changes the labels of what it writes."""

    zone: Name
    dag_id: str = Field(min_length=1)
    task_id: str = Field(min_length=1)
    dag_file: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description=(
            "the DAG file that defines dag_id, relative to the DAG folder (Airflow's relative_fileloc, "
            "e.g. 'purchases_reclassify.py'): the pass is granted only to tries of the DAG parsed from "
            "that file, so another file defining the same dag_id gets none"
        ),
    )
    outputs: ReclassifiedLabels
    description: str = ""

    @field_validator("dag_file")
    @classmethod
    def _relative_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = value.removeprefix("./")
        parts = path.split("/")
        if path.startswith("/") or "\\" in path or any(part in ("", ".", "..") for part in parts):
            raise ValueError(
                f"{value!r} is not a path relative to the DAG folder (e.g. 'team/reclassify.py'): no "
                "leading '/', no '.', '..' or empty parts, '/' as separator"
            )
        return path


class Exemption(_Model):
    """A time-bounded waiver: a deny that matches it becomes an allow, recorded as exempted."""

    zone: Name
    dag: str = "*"
    task: str = "*"
    asset: str = "*"
    reason: str = Field(min_length=1)
    ticket: str = Field(min_length=1)
    expires: datetime | date

    @field_validator("dag", "task", "asset")
    @classmethod
    def _valid_globs(cls, value: str) -> str:
        check_glob(value)
        return value

    @field_validator("expires", mode="before")
    @classmethod
    def _parse_expires(cls, value: object) -> date | datetime:
        """A quoted ``'2030-12-31'`` is the same bare date as an unquoted one, not midnight."""
        if isinstance(value, date):  # also datetime; YAML builds both from unquoted values
            return value
        if isinstance(value, str):
            text = value.strip()
            try:
                if _DATE_ONLY.fullmatch(text):
                    return date.fromisoformat(text)
                return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
            except ValueError:
                pass
        raise ValueError(f"expected a date (YYYY-MM-DD) or an ISO 8601 date-time, got {str(value)[:40]!r}")

    @property
    def expires_at(self) -> datetime:
        """A bare date is valid through that whole day (UTC); a naive datetime is read as UTC."""
        if isinstance(self.expires, datetime):
            if self.expires.tzinfo is None:
                return self.expires.replace(tzinfo=timezone.utc)
            return self.expires
        if self.expires == date.max:
            return datetime.max.replace(tzinfo=timezone.utc)
        return datetime.combine(self.expires + timedelta(days=1), time(0), tzinfo=timezone.utc)


CredentialKind = Literal["connection", "variable"]


def credential_key(name: str) -> str:
    """The form in which a connection id or variable key (or a pattern of them) is matched: upper
    case, without trailing spaces.

    Every spelling Airflow's secrets lookup serves as the same connection must match the same
    pattern: the environment-variables backend reads ``AIRFLOW_CONN_<ID>`` / ``AIRFLOW_VAR_<KEY>``
    with the id upper-cased (``WAREHOUSE_RAW`` and ``Warehouse_Raw`` are ``warehouse_raw``), and
    MySQL's default collations compare ``'warehouse_raw '`` equal to ``'warehouse_raw'``. Matching
    an exact spelling only would serve a restricted connection under another spelling as an
    unlisted one.
    """
    return name.rstrip(" ").upper()


class Credential(_Model):
    """What an Airflow connection or variable gives access to, and so which zones may obtain it.

    Either what it reaches — ``categories`` and/or the ``catalog`` patterns of the data it serves,
    decided like an input of those labels — or directly the ``zones`` that may use it.
    """

    categories: list[Name] = Field(default_factory=list, description="categories of the data it reaches")
    catalog: list[str] = Field(
        default_factory=list,
        description="catalog patterns (uri, table, uri_regex or table_regex exactly as written in "
        "'catalog:') of the data it serves: it carries their labels",
    )
    zones: list[Name] = Field(default_factory=list, description="the zones that may use it")
    description: str = ""

    @model_validator(mode="after")
    def _labels_or_zones(self) -> Credential:
        if self.zones and (self.categories or self.catalog):
            raise ValueError(
                "give either 'zones' or what it reaches ('categories' and/or 'catalog'), not both"
            )
        if not (self.zones or self.categories or self.catalog):
            raise ValueError(
                "say what it reaches ('categories' and/or 'catalog') or which 'zones' may use it"
            )
        return self


class Settings(_Model):
    """Policy-wide behaviour."""

    require_zone: bool = Field(
        default=False, description="every task must be in a zone: unzoned tasks are a DAG import error"
    )
    default_zone: Name | None = Field(default=None, description="zone of tasks whose DAG names none")
    unlisted_connections: UnlabeledBehaviour = Field(
        default="allow",
        description="connections no 'connections:' pattern matches: served to every task (allow) or to none",
    )
    unlisted_variables: UnlabeledBehaviour = Field(
        default="allow",
        description="variables no 'variables:' pattern matches: served to every task (allow) or to none",
    )


class Policy(_Model):
    """A whole policy file."""

    version: Literal[1] = 1
    name: str = ""
    settings: Settings = Field(default_factory=Settings)
    categories: dict[Name, Category] = Field(default_factory=dict)
    catalog: list[CatalogEntry] = Field(default_factory=list)
    zones: dict[Name, Zone] = Field(default_factory=dict)
    flows: list[Flow] = Field(default_factory=list)
    reclassifiers: dict[Name, Reclassifier] = Field(default_factory=dict)
    exemptions: list[Exemption] = Field(default_factory=list)
    connections: dict[str, Credential] = Field(
        default_factory=dict, description="connection id globs and what each connection reaches"
    )
    variables: dict[str, Credential] = Field(
        default_factory=dict, description="variable key globs and what each variable reaches"
    )

    @field_validator("connections", "variables", mode="before")
    @classmethod
    def _credentials_none_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("categories", "zones", "reclassifiers", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("catalog", "flows", "exemptions", mode="before")
    @classmethod
    def _none_is_empty_list(cls, value: object) -> object:
        return [] if value is None else value


_ID = re.compile(NAME_PATTERN)
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def is_valid_name(value: str) -> bool:
    """Whether ``value`` may name a zone, category, purpose or reclassifier."""
    return bool(_ID.match(value))
