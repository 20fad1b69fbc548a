"""The command line of ``make demo`` (scripts/demo.py).

The whole demo (real api-server, scheduler, dag-processor, triggerer) takes about a minute and is
run by hand (`make demo`); the tests beside this one cover its parts (scripts/localdemo/: what it
decides and prints, and that ``stop`` signals exactly the processes it recorded), the summary
(scripts/demo_summary.py) and the driver (scripts/deploy/).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.demo import build_parser

REPO_ROOT = Path(__file__).resolve().parents[3]


# ----------------------------------------------------------------------------- arguments


def test_up_defaults() -> None:
    args = build_parser().parse_args(["up"])
    assert (args.port, args.host, args.reset, args.strict) == (8080, "127.0.0.1", False, False)
    assert args.startup_timeout > 0 and args.run_timeout > 0
    assert Path(args.demo_dir) == REPO_ROOT / ".demo"


def test_up_options() -> None:
    args = build_parser().parse_args(
        ["--demo-dir", "/tmp/x", "up", "--port", "8081", "--host", "0.0.0.0", "--run-timeout", "5", "--reset"]
    )
    assert (args.demo_dir, args.port, args.host, args.run_timeout, args.reset) == (
        "/tmp/x",
        8081,
        "0.0.0.0",
        5.0,
        True,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["up", "--port", "0"], "port out of range"),
        (["up", "--port", "http"], "not a port number"),
        (["up", "--run-timeout", "-3"], "must be positive"),
        (["up", "--startup-timeout", "soon"], "not a number"),
        (["down"], "invalid choice"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
