#!/usr/bin/env python3
"""Constraints for installing this provider into an existing Airflow image (docker/Dockerfile).

``constraints/constraints-X.Y.txt`` pins the versions the provider was tested with: a complete,
minimal Airflow install. The official image holds many more packages (about 60 providers), and
its versions come from Airflow's own constraints: forcing ours onto it would change packages
under providers we never tested (FAB's Flask-AppBuilder, for one, needs ``python-dateutil<3``).
So, as Airflow's docs recommend for images, nothing already installed may change: every
installed distribution is pinned at its installed version, and the repository's pins apply only
to what the image does not have yet (this provider's own new dependencies). ``pip check`` then
proves the result consistent::

    pip freeze | python image_constraints.py constraints-3.11.txt > /tmp/constraints.txt

Standard library only; runs with the image's Python.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalized name: ``Flask_AppBuilder`` and ``flask-appbuilder`` are the same."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: Iterable[str]) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line (comments, URLs and editables ignored)."""
    result: dict[str, str] = {}
    for line in lines:
        match = _NAME.match(line)
        if match and not line.lstrip().startswith(("#", "-")):
            result[canonical(match.group(1))] = match.group(2)
    return result


def merge(installed: dict[str, str], tested: dict[str, str], *, exclude: Iterable[str] = ()) -> list[str]:
    """Installed versions win; tested pins fill in the rest; ``exclude``: packages being installed."""
    skip = {canonical(name) for name in exclude}
    merged = {**tested, **installed}
    return [f"{name}=={merged[name]}" for name in sorted(merged) if name not in skip]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(f"usage: pip freeze | {argv[0]} TESTED_CONSTRAINTS [EXCLUDE ...]", file=sys.stderr)
        return 2
    with open(argv[1]) as handle:
        tested = pins(handle)
    installed = pins(sys.stdin)
    if not installed:
        print("no installed packages on stdin (pipe `pip freeze` into this script)", file=sys.stderr)
        return 2
    # This provider itself is what gets installed: never pin it (an old copy may be installed).
    for line in merge(installed, tested, exclude=["airflow-provider-policyzones", *argv[2:]]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
