"""Demo and deployment helpers (``make demo``, ``make demo-stop``); not part of the package."""
