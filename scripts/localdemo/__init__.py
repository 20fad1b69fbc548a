"""The parts of ``make demo`` (scripts/demo.py is its entry point)."""
