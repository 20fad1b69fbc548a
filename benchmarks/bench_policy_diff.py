"""Loading, validating and diffing two policies of 10,000 catalog patterns, against loading one.

What ``policyzones validate NEW --against OLD`` does before a policy is replaced: both files are
loaded and validated, then compared (:func:`airflow_policyzones.policy.diff.diff_policies`). The
baseline, measured in the same run, is what every component does to use one policy: load,
validate and compile it into the engine (``PolicyEngine.from_file``).

Two diffs are timed: a realistic change (1 % of the catalog entries and one zone edited) and the
worst case (two unrelated generated policies: every catalog entry removed and another added).
``policy_diff_ratio`` is the realistic one; the worst case is printed next to it.

Last line: ``policy_diff_ratio=<n> worst_case_ratio=<n> load_one_ms=<n> load_two_and_diff_ms=<n>
diff_ms=<n> changes=<n>``. Target: ``policy_diff_ratio <= 2``.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable

from airflow_policyzones.policy import PolicyEngine, load_policy_bytes
from airflow_policyzones.policy.diff import diff_policies
from benchmarks.generate import generate_policy

PATTERNS = 10_000
RUNS = 7
ROUNDS = 9
TARGET_RATIO = 2.0
EDITED_ENTRIES = PATTERNS // 100


def _median_ms(run: Callable[[], object], runs: int = RUNS) -> float:
    samples: list[int] = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter_ns()
        run()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e6


def _edited(content: bytes) -> bytes:
    """``content`` with 1 % of the catalog entries' aggregation flipped and one zone relaxed."""
    edited = content.replace(b'"aggregated": false}', b'"aggregated": true}', EDITED_ENTRIES)
    return edited.replace(b'"requires_consent": true', b'"requires_consent": false', 1)


def main() -> None:
    old = generate_policy(patterns=PATTERNS).yaml_text.encode()
    new = _edited(old)
    unrelated = generate_policy(patterns=PATTERNS, seed=7).yaml_text.encode()
    assert new != old

    def load_one() -> object:
        return PolicyEngine(load_policy_bytes(old, source="old.yaml"))

    def load_two_and_diff(other: bytes) -> Callable[[], object]:
        def run() -> object:
            before = load_policy_bytes(old, source="old.yaml").policy
            after = load_policy_bytes(other, source="new.yaml").policy
            return diff_policies(old=before, new=after)

        return run

    before = load_policy_bytes(old).policy
    after = load_policy_bytes(new).policy
    changes = len(diff_policies(old=before, new=after))
    worst_changes = len(diff_policies(old=before, new=load_policy_bytes(unrelated).policy))

    # Paired: each round times both sides back to back, and the ratio is the median of the
    # rounds' ratios, so that a machine busy with something else slows both sides alike.
    one: list[float] = []
    two: list[float] = []
    worst: list[float] = []
    plain: list[float] = []
    for _ in range(ROUNDS):
        one.append(_median_ms(load_one, runs=1))
        two.append(_median_ms(load_two_and_diff(new), runs=1))
        worst.append(_median_ms(load_two_and_diff(unrelated), runs=1))
        plain.append(_median_ms(lambda: load_policy_bytes(old, source="old.yaml"), runs=1))
    load_one_ms, two_ms, worst_ms = statistics.median(one), statistics.median(two), statistics.median(worst)
    validate_ms = statistics.median(plain)
    diff_ms = _median_ms(lambda: diff_policies(old=before, new=after))
    ratio = statistics.median(b / a for a, b in zip(one, two, strict=True))
    worst_ratio = statistics.median(b / a for a, b in zip(one, worst, strict=True))
    plain_ratio = statistics.median(b / a for a, b in zip(plain, two, strict=True))

    print(
        f"policies of {PATTERNS:,} catalog patterns ({len(old) / 1e6:.1f} MB of YAML each); Python "
        f"{sys.version.split()[0]}",
        flush=True,
    )
    print(f"load + validate + compile one policy            {load_one_ms:9.1f} ms  (baseline)")
    print(
        f"load + validate two + diff ({changes} changes)      {two_ms:9.1f} ms  ratio {ratio:.2f} "
        f"(target <= {TARGET_RATIO:g}: {'met' if ratio <= TARGET_RATIO else 'NOT met'})"
    )
    print(f"  of which the diff alone                       {diff_ms:9.1f} ms")
    print(
        f"worst case: unrelated policies ({worst_changes} changes)  {worst_ms:9.1f} ms  "
        f"ratio {worst_ratio:.2f}"
    )
    print(
        f"for reference: load + validate one, not compiled {validate_ms:9.1f} ms  "
        f"(two + diff = {plain_ratio:.2f}x that)"
    )
    print()
    print(
        f"policy_diff_ratio={ratio:.2f} worst_case_ratio={worst_ratio:.2f} load_one_ms={load_one_ms:.1f} "
        f"load_two_and_diff_ms={two_ms:.1f} diff_ms={diff_ms:.1f} changes={changes}"
    )


if __name__ == "__main__":
    main()
