"""Tamper evidence at scale: how fast ``verify-records`` checks the chain, and what sealing rows adds
to recording a decision, measured side by side in one run.

In a fresh PostgreSQL metadata database (``airflow db migrate``: Airflow's tables and ours):

* **verify**: 1,000,000 decision rows and 200,000 violation rows (every fifth decision a deny
  with one violation; 500 DAGs; 90 days), each sealed with the digests the application computes
  (:mod:`airflow_policyzones.db.chain`), linked per writer, loaded with ``COPY``; then
  :func:`~airflow_policyzones.db.chain_verify.verify_records` over all of them, ``REPETITIONS_VERIFY``
  times (median). It must find no problem.
* **chain overhead**: :func:`~airflow_policyzones.db.service.decide_and_record` (in process, on the
  same database, after the load) for a deny with three violations and for an allow, with rows
  sealed and with sealing swapped for a no-op, alternating on/off every decision
  (``DECISIONS_TIMED`` each); the overhead is the difference of the medians over the median
  without. The median of each pair's ratio and the time spent sealing (measured inside) are
  printed too: on a shared machine the medians of ~7 ms commits move by a few percent between
  runs, the sealing itself does not.

* **evidence**: each decision also has one recorded input (2 in 5 of category
  ``purchase_events``: the denied ones raw, the others a reclassifier's derived output from
  another zone) and ``LABEL_EVENTS`` label events (the derived purchases among the assets written);
  :func:`~airflow_policyzones.db.evidence.data_use_evidence` for ``purchase_events`` x one zone
  over the whole 90 days, ``REPETITIONS_EVIDENCE`` times (median): uses with derivation paths,
  blocked attempts, the matrix over every zone, completeness.

Run with ``python -m benchmarks.bench_evidence`` (``make bench``). The last line is
``evidence_median_s=<n> verify_rows_per_s=<n> chain_overhead_pct=<n> paired_overhead_pct=<n>
decide_median_ms=<n> sealing_us=<n>``; targets: ``evidence_median_s`` <= 2,
``verify_rows_per_s`` >= 100,000 and ``chain_overhead_pct`` <= 5.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DECISIONS = int(os.environ.get("PZ_BENCH_EVIDENCE_DECISIONS", "1000000"))
VIOLATION_EVERY = 5
DAGS = 500
DAYS = 90
REPETITIONS_VERIFY = 3
REPETITIONS_EVIDENCE = 5
LABEL_EVENTS = DECISIONS // 5
CATEGORIES = ("purchase_events", "purchase_events", "ad_clicks", "watch_history", "device_ids")
EVIDENCE_ZONE = "zone_07"
TARGET_EVIDENCE_S = 2.0
DECISIONS_TIMED = 600
WARMUP = 20
TARGET_ROWS_PER_S = 100_000
TARGET_OVERHEAD_PCT = 5.0
END = datetime(2026, 11, 1, tzinfo=timezone.utc)
VERSION = "sha256:" + "ab" * 32
REASON = "category purchase_events is not allowed in zone zone_07 (allowed: ad_clicks)"
REMEDIATION = "read an aggregated, consented copy or move the task to a zone that allows purchase_events"


def _rows() -> Iterator[tuple[list[object], list[object] | None]]:
    """Each decision's column values (``DECISION_FIELDS`` order) and its violation's, if any."""
    step = timedelta(seconds=DAYS * 86400 / DECISIONS)
    for i in range(1, DECISIONS + 1):
        deny = i % VIOLATION_EVERY == 0
        dag = f"dag_{i * 7919 % DAGS:03d}"
        identity = [dag, f"task_{i % 40}", f"scheduled__{i}", -1, 1]
        at = END - (DECISIONS - i) * step
        decision = [
            *identity,
            _zone(i),
            "dag",
            "enforce",
            "deny" if deny else "allow",
            not deny,
            VERSION,
            "c" * 64,
            "api",
            at,
            1,
            int(deny),
            int(deny),
            i - 1 if i > 1 else None,
            int(deny),
        ]
        violation = None
        if deny:
            violation = [
                *identity,
                _zone(i),
                "enforce",
                "deny",
                "category_not_allowed",
                ["category_not_allowed"],
                f"s3://lake/raw/purchases/part-{i % 997}",
                REASON,
                REMEDIATION,
                None,
                VERSION,
                at,
                "declared",
                1,
            ]
        yield decision, violation


def _zone(i: int) -> str:
    """20 zones, independent of which decisions deny (every fifth)."""
    return f"zone_{i // 7 % 20:02d}"


def _input_row(i: int) -> list[object]:
    """The one recorded input of decision ``i`` (``decision_input`` columns after ``id``)."""
    category = CATEGORIES[i % 5]
    if i % VIOLATION_EVERY == 0:  # the denied ones: raw purchases, as their violation names
        return [
            i,
            0,
            "asset",
            f"s3://lake/raw/purchases/part-{i % 997}",
            True,
            category,
            ["ads"],
            False,
            [],
            [],
            "declared",
        ]
    if i % 5 == 1:  # purchases derived by reclassifier r_daily in zone_03, read in every zone
        name = f"s3://lake/derived/purchases_daily/part-{i % 50}"
        return [i, 0, "asset", name, True, category, [_zone(i)], True, ["zone_03"], ["r_daily"], "declared"]
    name = f"s3://lake/raw/{category}/part-{i % 997}"
    return [i, 0, "asset", name, True, category, [], False, [], [], "observed"]


def _label_event(j: int) -> list[object]:
    """Label event ``j`` (``asset_label_event`` columns after ``id``): the writes of decision 5j+1,
    the derived purchases among them (every 100th), the rest other assets."""
    i = 5 * j + 1
    at = END - timedelta(seconds=DAYS * 86400 * (DECISIONS - i) / DECISIONS)
    derived = j % 100 == 0
    name = f"s3://lake/derived/purchases_daily/part-{j // 100 % 50}" if derived else f"s3://lake/out/{j}"
    return [
        "asset",
        name,
        ["purchase_events"],
        [_zone(i)] if derived else [],
        derived,
        ["zone_03"],
        ["r_daily"] if derived else [],
        f"dag_{i * 7919 % DAGS:03d}",
        f"task_{i % 40}",
        f"scheduled__{i}",
        -1,
        1,
        "zone_03",
        i,
        "r_daily" if derived else None,
        VERSION,
        at,
        "declared",
    ]


INPUT_FIELDS = (
    "decision_id",
    "position",
    "namespace",
    "name",
    "labeled",
    "category",
    "consented",
    "aggregated",
    "origins",
    "reclassified_by",
    "source",
)
EVENT_FIELDS = (
    "namespace",
    "name",
    "categories",
    "consented",
    "aggregated",
    "origins",
    "reclassified_by",
    "dag_id",
    "task_id",
    "run_id",
    "map_index",
    "try_number",
    "zone",
    "decision_id",
    "reclassifier",
    "policy_version",
    "recorded_at",
    "source",
)


def _copy_value(value: object) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    return str(value)


TABLES = (
    "policyzones_decision",
    "policyzones_violation",
    "policyzones_decision_input",
    "policyzones_asset_label_event",
)


def load(url: str) -> float:
    """Seal and ``COPY`` the rows; returns the seconds it took."""
    import psycopg2
    import sqlalchemy as sa

    from airflow_policyzones.db.chain import (
        DECISION_FIELDS,
        VIOLATION_FIELDS,
        decision_digest,
        violation_digest,
    )

    started = time.perf_counter()
    decisions, violations = io.StringIO(), io.StringIO()
    next_violation = 1
    for i, (decision, violation) in enumerate(_rows(), 1):
        digests = []
        if violation is not None:
            digest = violation_digest(violation)
            digests.append(digest)
            violations.write(
                "\t".join(_copy_value(v) for v in (next_violation, i, *violation, digest)) + "\n"
            )
            next_violation += 1
        digest = decision_digest(decision, digests)
        decisions.write("\t".join(_copy_value(v) for v in (i, *decision, digest)) + "\n")
    print(f"  sealed {DECISIONS:,} decisions in {time.perf_counter() - started:.1f} s", flush=True)
    inputs, events = io.StringIO(), io.StringIO()
    for i in range(1, DECISIONS + 1):
        inputs.write("\t".join(_copy_value(v) for v in (i, *_input_row(i))) + "\n")
    for j in range(LABEL_EVENTS):
        events.write("\t".join(_copy_value(v) for v in (j + 1, *_label_event(j))) + "\n")
    parsed = sa.make_url(url)
    conn = psycopg2.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username, dbname=parsed.database
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SET session_replication_role = replica")  # consistent by construction: no FK checks
            for table, fields, buffer in (
                ("policyzones_decision", (*DECISION_FIELDS, "digest"), decisions),
                ("policyzones_violation", ("decision_id", *VIOLATION_FIELDS, "digest"), violations),
                ("policyzones_decision_input", INPUT_FIELDS, inputs),
                ("policyzones_asset_label_event", EVENT_FIELDS, events),
            ):
                buffer.seek(0)
                columns = ", ".join(("id", *fields))
                cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)
            for table in TABLES:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            for table in TABLES:
                cur.execute(f"VACUUM ANALYZE {table}")
    finally:
        conn.close()
    return time.perf_counter() - started


def measure_verify() -> tuple[float, int]:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.chain_verify import verify_records

    timings = []
    rows = 0
    for _ in range(REPETITIONS_VERIFY):
        with create_session() as session:
            started = time.perf_counter()
            report = verify_records(session=session)
            timings.append(time.perf_counter() - started)
        if not report.ok:
            raise SystemExit(f"verification found problems in sealed rows: {report.problems[:5]}")
        rows = report.decisions + report.violations
        print(f"  verified {rows:,} rows in {timings[-1]:.2f} s (head {report.head[:16]}...)", flush=True)
    return statistics.median(timings), rows


def measure_evidence(engine: Any) -> float:
    """Median seconds of one data-use report (purchase_events x one zone, the whole 90 days)."""
    from airflow.utils.session import create_session

    from airflow_policyzones.db.evidence import data_use_evidence

    timings = []
    since = END - timedelta(days=DAYS + 1)
    for _ in range(REPETITIONS_EVIDENCE):
        with create_session() as session:
            started = time.perf_counter()
            report = data_use_evidence(
                session, policy=engine, category="purchase_events", zone=EVIDENCE_ZONE, since=since, until=END
            )
            timings.append(time.perf_counter() - started)
        print(
            f"  evidence in {timings[-1]:.2f} s: {report.uses_total:,} uses in {len(report.uses)} groups, "
            f"{report.blocked_total:,} blocked, {len(report.matrix)} matrix cells",
            flush=True,
        )
    if not report.uses or not report.blocked or not report.uses[0].path:
        raise SystemExit(f"the evidence report misses uses, blocked attempts or paths: {report.verdict}")
    print(f"  verdict: {report.verdict}")
    return statistics.median(timings)


@contextmanager
def chaining(enabled: bool) -> Iterator[None]:
    """Rows sealed (as always) or not for the block: sealing is swapped for a no-op, which leaves
    SQLAlchemy's listeners (and its compiled statement cache) as they are."""
    from airflow_policyzones.db import chain

    seal = chain._seal

    def timed_seal(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            seal(*args, **kwargs)
        finally:
            SEALING.append(time.perf_counter() - started)

    chain._seal = timed_seal if enabled else _no_seal
    try:
        yield
    finally:
        chain._seal = seal


SEALING: list[float] = []
"""Seconds spent sealing, per sealed decision row (measured inside the "with" runs)."""


def _no_seal(*_args: Any, **_kwargs: Any) -> None:
    return None


def measure_decisions(engine: Any) -> tuple[dict[bool, list[float]], list[float]]:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.service import decide_and_record
    from airflow_policyzones.wire import DecisionRequest

    def request(deny: bool) -> DecisionRequest:
        inputs = (
            ["s3://lake/raw/purchases/d", "s3://lake/raw/mixed/p", "s3://lake/raw/ad_clicks/x"]
            if deny
            else ["s3://lake/raw/ad_clicks/x"]
        )
        return DecisionRequest.model_validate(
            {
                "task": {
                    "dag_id": "recs_dag" if deny else "ads_dag",
                    "task_id": "read",
                    "run_id": f"bench__{uuid.uuid4().hex}",
                    "map_index": -1,
                    "try_number": 1,
                },
                "zone": "recs" if deny else "ads",
                "zone_source": "dag",
                "inputs": [{"namespace": "asset", "name": name} for name in inputs],
            }
        )

    def timed(enabled: bool, deny: bool) -> float:
        item = request(deny)
        with chaining(enabled), create_session() as session:
            started = time.perf_counter()
            response = decide_and_record(session=session, engine=engine, request=item, source="in_process")
            elapsed = (time.perf_counter() - started) * 1000
        assert response.allowed is not deny, response
        return elapsed

    samples: dict[bool, list[float]] = {True: [], False: []}
    paired: list[float] = []
    for index in range(WARMUP + DECISIONS_TIMED):
        deny = index % 2 == 0
        order = (True, False) if index % 4 < 2 else (False, True)
        pair = {enabled: timed(enabled, deny) for enabled in order}
        if index >= WARMUP:
            for enabled, value in pair.items():
                samples[enabled].append(value)
            paired.append(pair[True] / pair[False] - 1)
    return samples, paired


def main() -> int:
    home = tempfile.mkdtemp(prefix="policyzones-bench-evidence-")
    os.environ["AIRFLOW_HOME"] = home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.airflow_db import TEST_POLICY, prepared_database, use_database

    policy = Path(home) / "policy.yaml"
    policy.write_text(TEST_POLICY)
    prepared = prepared_database("postgres")
    with use_database(prepared.url):
        from airflow_policyzones.policy import PolicyEngine

        engine = PolicyEngine.from_file(policy)
        print(f"loading {DECISIONS:,} sealed decisions and {DECISIONS // VIOLATION_EVERY:,} violations")
        print(f"  loaded in {load(prepared.url):.1f} s", flush=True)
        seconds, rows = measure_verify()  # before the decisions below: half of them are unsealed
        print(f"data_use_evidence: purchase_events x {EVIDENCE_ZONE} over {DECISIONS:,} decisions")
        evidence_s = measure_evidence(engine)
        print(
            f"decide_and_record in process on PostgreSQL, chaining on/off alternating, {DECISIONS_TIMED} each"
        )
        samples, paired = measure_decisions(engine)
        on, off = statistics.median(samples[True]), statistics.median(samples[False])
        overhead = (on - off) / off * 100
        paired_pct = statistics.median(paired) * 100
        print(f"  median {on:.2f} ms with chaining, {off:.2f} ms without: {overhead:+.1f} %")
        print(f"  median of the paired ratios: {paired_pct:+.1f} %")
        sealing = statistics.median(SEALING[-DECISIONS_TIMED:]) * 1e6
        print(
            f"  sealing itself (digests, measured inside): median {sealing:.0f} µs a decision, "
            f"{sealing / 10 / off:.2f} % of the median without"
        )
    rate = rows / seconds
    verdicts = (
        "meets" if rate >= TARGET_ROWS_PER_S else "MISSES",
        "meets" if overhead <= TARGET_OVERHEAD_PCT else "MISSES",
        "meets" if evidence_s <= TARGET_EVIDENCE_S else "MISSES",
    )
    print(
        f"evidence: median {evidence_s:.2f} s for one category x zone ({verdicts[2]} the target of "
        f"{TARGET_EVIDENCE_S:.0f} s)"
    )
    print(
        f"verify-records: median {seconds:.2f} s over {rows:,} rows = {rate:,.0f} rows/s "
        f"({verdicts[0]} the target of {TARGET_ROWS_PER_S:,}); chaining adds {overhead:.1f} % to "
        f"decide_and_record's median ({verdicts[1]} the target of {TARGET_OVERHEAD_PCT:.0f} %)"
    )
    print(
        f"evidence_median_s={evidence_s:.2f} verify_rows_per_s={rate:.0f} chain_overhead_pct={overhead:.1f} "
        f"paired_overhead_pct={paired_pct:.1f} decide_median_ms={off:.2f} sealing_us={sealing:.0f}"
    )
    return 0 if "MISSES" not in verdicts else 1


if __name__ == "__main__":
    sys.exit(main())
