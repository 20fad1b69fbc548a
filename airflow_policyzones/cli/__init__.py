"""The ``policyzones`` command line: ``validate``, ``explain`` and ``check`` (see :mod:`.main`)."""

from __future__ import annotations
