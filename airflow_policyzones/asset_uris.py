"""Asset URIs as Airflow stores them: the rules the policy's catalog patterns are put through.

Airflow rewrites an ``Asset``'s URI when the Asset is created (``_sanitize_uri``: scheme
lower-cased, user info, fragment and trailing slashes dropped, query sorted, then the rules a
provider registers for the scheme as an asset URI handler, e.g. the postgres provider adds the
default port and requires database, schema and table). Inputs reach the policy in that form, so
catalog ``uri`` patterns must be in it too. This module is the Airflow side of
:class:`airflow_policyzones.policy.patterns.UriNormalizer`; the pure core never imports Airflow.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from pathlib import Path

from airflow_policyzones.policy.patterns import UriNormalizer


class AirflowUriNormalizer:
    """Airflow's own URI rules, applied by creating an ``Asset`` (imported on first use)."""

    __slots__ = ()

    def __call__(self, uri: str, /) -> str:
        """``uri`` as ``Asset(uri).uri`` stores it; ``ValueError`` with Airflow's reason if it refuses."""
        return _stored_uri(uri)

    def has_rules(self, scheme: str, /) -> bool:
        """Whether an installed provider registers rules for ``scheme`` (``postgres``, ``s3``, ...)."""
        return scheme.lower() in _handled_schemes()


@functools.lru_cache(maxsize=65_536)
def _stored_uri(uri: str) -> str:
    from airflow.sdk import Asset

    try:
        with warnings.catch_warnings():  # a password in the URI: Airflow drops it and warns
            warnings.simplefilter("ignore")
            return str(Asset(uri=uri).uri)
    except ValueError:
        raise
    except Exception as error:  # a provider's handler failing otherwise: the URI is not accepted
        raise ValueError(f"{type(error).__name__}: {error}") from None


@functools.lru_cache(maxsize=1)
def _handled_schemes() -> frozenset[str]:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    # Airflow applies no provider rules to file:// URIs (its own lookup returns a no-op for them).
    handlers = ProvidersManagerTaskRuntime().asset_uri_handlers  # type: ignore[no-untyped-call]
    return frozenset(handlers) - {"file"}


def airflow_uri_normalizer() -> AirflowUriNormalizer | None:
    """Airflow's URI rules, or ``None`` where Airflow's task SDK is not installed (a policy
    repository's CI running ``policyzones validate``): patterns are then matched as written.

    Airflow is not imported here (that takes seconds), only when a URI is first normalized.
    """
    spec = importlib.util.find_spec("airflow")
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations or not any((Path(location) / "sdk").is_dir() for location in locations):
        return None
    return AirflowUriNormalizer()


def stored_form(uri: str, *, normalize_uri: UriNormalizer | None) -> str:
    """An input URI as Airflow would store it, or as given if Airflow would refuse it."""
    if normalize_uri is None:
        return uri
    try:
        return normalize_uri(uri)
    except ValueError:
        return uri
