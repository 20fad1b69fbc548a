"""Property tests of the SQL analysis: no generated read escapes ``tables_in_sql`` silently.

The generator builds sqlglot ASTs with ``sqlglot.exp`` (and a few parsed templates whose
placeholders it replaces) and renders them with ``.sql(dialect=...)``, so the text is valid
syntax of the dialect. It knows, by construction, which table names stand in a read position and
which in a write position. The property (docs/sql-analysis.md, "names every table ... or raises
``SqlParseError``"):

* every table the generator put in a read position is in ``result.reads`` (names compared
  lower-cased, as the spec reports them), and every written table is in ``result.writes``;
* or the call raises :class:`SqlParseError`; it never returns normally without them, and never
  raises anything else;
* and a CTE name that is no table is never reported as one.

The generator's model of names is kept small enough to be obviously right:

* read tables (``tb_...``), written tables (``wr_...``) and CTEs (``cx_...``) come from disjoint
  pools of fresh identifiers that are no keyword in any dialect; each table has one spelling per
  example (sometimes schema-qualified, sometimes quoted with mixed case), used everywhere;
* the only collisions are controlled ones: a CTE whose name is an unqualified read table's name in
  another case and/or quoting. Whether it shadows the table follows the dialect's identifier rules
  as the spec defines them (sqlglot's ``Dialect.normalize_identifier``): in PostgreSQL
  ``WITH "Tb_a" AS (...) SELECT * FROM tb_a`` reads ``tb_a``; in Snowflake ``WITH "TB_A" ...``
  shadows it. A shadowed reference is simply not required; an unshadowed one is;
* CTEs are referenced only where they are visible (the query's body, later sibling CTEs; no
  ``RECURSIVE``). Dialects whose rendering hoists nested ``WITH`` to the top (Spark, Databricks,
  Hive, T-SQL) get ``WITH`` at the top of a statement only, so rendering never changes scoping;
* written tables are never read except as the target of ``UPDATE``/``DELETE``/``MERGE`` (which
  read their target); a target a ``CREATE TABLE ... AS`` earlier in the script created is local
  and not required as a read (spec: "Once a script created a table ...").

Contexts: CTEs (also nested), derived tables, set operations, scalar subqueries in the select
list, ``WHERE``, ``HAVING``, ``VALUES`` and ``UPDATE ... SET``, ``IN``/``EXISTS``, joins,
``LATERAL`` / ``CROSS APPLY`` and ``UNNEST`` (or its dialect's spelling) where the dialect has
them, ``INSERT ... SELECT``, ``INSERT ... VALUES``, CTAS, ``UPDATE``, ``DELETE``, ``MERGE``,
multi-statement scripts and ``--`` / ``/* */`` comments at random token boundaries.

Examples: ``EXAMPLES`` (300) per dialect for each of the 13 dialects in ``DIALECTS`` (3,900 for
the property), plus ``SANITY_EXAMPLES`` (40) per dialect in
``test_the_generator_writes_sql_sqlglot_parses_and_the_analysis_mostly_answers``, which checks
the generator itself (sqlglot parses every script back and finds every expected table) and that
the analysis answers rather than refuses for most of them (else the property would hold
vacuously). Run that test with ``-s`` to see the per-dialect counts.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from airflow_policyzones.policy.sql import SqlParseError, SqlTables, tables_in_sql
from tests.unit.policy.sql_corpus import DIALECTS

EXAMPLES = 300
SANITY_EXAMPLES = 40
# Dialects whose rendering moves a nested WITH to the top of the statement.
HOISTS_CTES = frozenset({"databricks", "spark", "hive", "tsql"})
LATERAL = frozenset({"postgres", "mysql", "snowflake", "databricks", "spark", "trino", "oracle", "duckdb"})
CROSS_APPLY = frozenset({"tsql"})
UNNEST = frozenset({"postgres", "snowflake", "bigquery", "databricks", "spark", "hive", "trino", "duckdb"})
MERGE = frozenset(
    {
        "postgres",
        "snowflake",
        "bigquery",
        "databricks",
        "spark",
        "tsql",
        "redshift",
        "trino",
        "oracle",
        "duckdb",
    }
)
# UPDATE ... FROM other tables
UPDATE_FROM = frozenset({"postgres", "snowflake", "redshift", "duckdb", "tsql"})
# Dialects where a CTE is visible in its own body without RECURSIVE (T-SQL, Oracle, Snowflake and
# SQLite make a self-referencing CTE recursive): there a table named like the CTE being defined is
# ambiguous inside its body, so the generator does not require it.
SELF_REFERENCING = frozenset({"tsql", "oracle", "snowflake", "sqlite"})
NO_INTERSECT = frozenset({"hive"})  # sqlglot renders INTERSECT/EXCEPT for Hive, which lacks them

_LATERAL_TEMPLATE = sqlglot.parse_one(
    "SELECT * FROM __a CROSS JOIN LATERAL (SELECT 1) AS __l", read="postgres"
)
_APPLY_TEMPLATE = sqlglot.parse_one("SELECT * FROM __a CROSS APPLY (SELECT 1) AS __l", read="tsql")
_UNNEST_TEMPLATE = sqlglot.parse_one(
    "SELECT * FROM __a CROSS JOIN UNNEST(ARRAY[1, 2]) AS __u(x)", read="postgres"
)
_MERGE_TEMPLATE = sqlglot.parse_one(
    "MERGE INTO __w AS t USING __s AS s ON t.c1 = s.c1 "
    "WHEN MATCHED THEN UPDATE SET c1 = s.c1 WHEN NOT MATCHED THEN INSERT (c1) VALUES (s.c1)",
    read="postgres",
)


@dataclass(frozen=True)
class Name:
    """A table name as one example spells it everywhere: parts of (text, quoted)."""

    parts: tuple[tuple[str, bool], ...]

    @property
    def reported(self) -> str:
        """The spec's reported name: parts joined with ``.``, lower-cased."""
        return ".".join(text for text, _ in self.parts).lower()

    def table(self, alias: str | None = None) -> exp.Table:
        identifiers = [exp.Identifier(this=text, quoted=quoted) for text, quoted in self.parts]
        table = exp.Table(this=identifiers[-1])
        if len(identifiers) > 1:
            table.set("db", identifiers[-2])
        if alias is not None:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        return table


@dataclass(frozen=True)
class Cte:
    text: str
    quoted: bool
    collides: Name | None = None
    """The read table whose name this CTE's name spells in another case or quoting."""

    def identifier(self) -> exp.Identifier:
        return exp.Identifier(this=self.text, quoted=self.quoted)


def normalized(text: str, quoted: bool, dialect: str) -> str:
    """How the dialect resolves an (unqualified) identifier: the spec's scoping rule."""
    identifier = exp.Identifier(this=text, quoted=quoted)
    return Dialect.get_or_raise(dialect).normalize_identifier(identifier).this


@dataclass
class Script:
    """What the generator put where, for one example."""

    dialect: str
    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)
    ctes_only: set[str] = field(default_factory=set)
    shadowed: int = 0
    created: set[Name] = field(default_factory=set)
    counter: int = 0

    def alias(self) -> str:
        self.counter += 1
        return f"a{self.counter}"


def _mixed_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


def _spelling(draw: st.DrawFn, base: str, *, qualified: bool) -> Name:
    """``base`` unquoted (lower or upper case) or quoted with mixed case; maybe with a schema."""
    style = draw(st.sampled_from(["lower", "upper", "quoted"]))
    text = {"lower": base, "upper": base.upper(), "quoted": _mixed_case(draw, base)}[style]
    parts = [(text, style == "quoted")]
    if qualified and draw(st.integers(0, 3)) == 0:
        schema = draw(st.sampled_from(["sc_raw", "sc_Mart", "sc_stage"]))
        parts.insert(0, (schema, draw(st.booleans()) or schema != schema.lower()))
    return Name(tuple(parts))


_SUFFIX = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=2, max_size=5)


@dataclass
class Gen:
    draw: st.DrawFn
    script: Script
    read_pool: list[Name]
    write_pool: list[Name]
    cte_bases: list[str]
    budget: int = 14  # bounds the size of a statement
    defining: list[Cte] = field(default_factory=list)
    """CTEs whose bodies are being generated (visible in them where the dialect allows self-reference)."""

    @property
    def dialect(self) -> str:
        return self.script.dialect

    def spend(self) -> bool:
        self.budget -= 1
        return self.budget > 0

    # -- names -------------------------------------------------------------------------------------

    def read_table(self, visible: tuple[Cte, ...]) -> exp.Table:
        collided = [cte.collides for cte in visible if cte.collides is not None]
        if collided and self.draw(st.booleans()):  # exercise the collisions
            name = self.draw(st.sampled_from(collided))
        else:
            name = self.draw(st.sampled_from(self.read_pool))
        alias = self.script.alias() if self.draw(st.booleans()) else None
        if len(name.parts) == 1:
            text, quoted = name.parts[0]
            key = normalized(text, quoted, self.dialect)
            shadowing = visible + tuple(self.defining if self.dialect in SELF_REFERENCING else ())
            if any(normalized(cte.text, cte.quoted, self.dialect) == key for cte in shadowing):
                self.script.shadowed += 1
                return name.table(alias)
        self.script.reads.add(name.reported)
        return name.table(alias)

    def new_cte(self) -> Cte:
        unqualified = [name for name in self.read_pool if len(name.parts) == 1]
        if unqualified and self.draw(st.integers(0, 2)) == 0:
            # a controlled collision: a read table's name in another (or the same) case and quoting
            table = self.draw(st.sampled_from(unqualified))
            return Cte(_mixed_case(self.draw, table.reported), self.draw(st.booleans()), collides=table)
        base = self.draw(st.sampled_from(self.cte_bases))
        self.script.ctes_only.add(base)
        quoted = self.draw(st.booleans())
        return Cte(_mixed_case(self.draw, base) if quoted else base, quoted)

    # -- queries -----------------------------------------------------------------------------------

    def query(self, visible: tuple[Cte, ...], *, top: bool = False) -> exp.Query:
        """A query, maybe with its own WITH, over what ``visible`` CTEs and the read pool offer."""
        ctes: list[tuple[Cte, exp.Query]] = []
        nested_ok = top or self.dialect not in HOISTS_CTES
        if nested_ok and self.spend() and self.draw(st.integers(0, 2)) == 0:
            names: set[str] = set()  # one WITH never defines a name twice
            for _ in range(self.draw(st.integers(1, 3))):
                cte = self.new_cte()
                key = normalized(cte.text, cte.quoted, self.dialect)
                if key in names:
                    continue
                names.add(key)
                self.defining.append(cte)
                body = self.query(visible + tuple(c for c, _ in ctes))
                self.defining.pop()
                ctes.append((cte, body))
        inner = visible + tuple(c for c, _ in ctes)
        body: exp.Query
        if self.spend() and self.draw(st.integers(0, 3)) == 0:
            operations = ["union", "union_all"]
            if self.dialect not in NO_INTERSECT:
                operations += ["intersect", "except"]
            operation = self.draw(st.sampled_from(operations))
            left, right = self.select(inner), self.select(inner)
            if operation == "union":
                body = exp.union(left, right, distinct=True)
            elif operation == "union_all":
                body = exp.union(left, right, distinct=False)
            elif operation == "intersect":
                body = exp.intersect(left, right, distinct=True)
            else:
                body = exp.except_(left, right, distinct=True)
        else:
            body = self.select(inner)
        if ctes:
            body.set(
                "with_",
                exp.With(
                    expressions=[
                        exp.CTE(this=query, alias=exp.TableAlias(this=cte.identifier()))
                        for cte, query in ctes
                    ]
                ),
            )
        return body

    def select(self, visible: tuple[Cte, ...]) -> exp.Select:
        select = exp.Select(expressions=[exp.column("c1")])
        if self.spend() and self.draw(st.integers(0, 3)) == 0:
            select.append("expressions", exp.alias_(self.scalar(visible), self.script.alias()))
        select.set("from_", exp.From(this=self.source(visible)))
        for _ in range(self.draw(st.integers(0, 2)) if self.spend() else 0):
            self.join(select, visible)
        if self.spend() and self.draw(st.booleans()):
            select.set("where", exp.Where(this=self.condition(visible)))
        if self.spend() and self.draw(st.integers(0, 3)) == 0:
            select.set("group", exp.Group(expressions=[exp.column("c1")]))
            having = exp.GT(this=exp.Count(this=exp.Star()), expression=self.scalar(visible))
            select.set("having", exp.Having(this=having))
        return select

    def source(self, visible: tuple[Cte, ...]) -> exp.Expr:
        choice = self.draw(st.integers(0, 5))
        if visible and choice in (0, 1):
            cte = self.draw(st.sampled_from(visible))
            return exp.Table(this=cte.identifier())
        if choice == 2 and self.spend():
            return exp.Subquery(
                this=self.query(visible), alias=exp.TableAlias(this=exp.to_identifier(self.script.alias()))
            )
        return self.read_table(visible)

    def join(self, select: exp.Select, visible: tuple[Cte, ...]) -> None:
        options = ["inner", "left", "cross"]
        if self.dialect in LATERAL:
            options.append("lateral")
        if self.dialect in CROSS_APPLY:
            options.append("apply")
        if self.dialect in UNNEST:
            options.append("unnest")
        kind = self.draw(st.sampled_from(options))
        if kind in ("lateral", "apply"):
            template = (_LATERAL_TEMPLATE if kind == "lateral" else _APPLY_TEMPLATE).copy()
            join = template.args["joins"][0]
            join.this.this.set("this", self.query(visible))
            join.this.set("alias", exp.TableAlias(this=exp.to_identifier(self.script.alias())))
        elif kind == "unnest":
            join = _UNNEST_TEMPLATE.copy().args["joins"][0]
        elif kind == "cross":
            join = exp.Join(this=self.source(visible), kind="CROSS")
        else:
            on = exp.EQ(this=exp.column("c1"), expression=exp.column("c1"))
            join = exp.Join(this=self.source(visible), side="LEFT" if kind == "left" else None, on=on)
        select.append("joins", join)

    def scalar(self, visible: tuple[Cte, ...]) -> exp.Subquery:
        return exp.Subquery(this=self.query(visible))

    def condition(self, visible: tuple[Cte, ...]) -> exp.Expr:
        kind = self.draw(st.sampled_from(["in", "exists", "compare", "plain"]))
        if kind == "in":
            return exp.In(this=exp.column("c1"), query=exp.Subquery(this=self.query(visible)))
        if kind == "exists":
            return exp.Exists(this=self.query(visible))
        if kind == "compare":
            return exp.GT(this=exp.column("c1"), expression=self.scalar(visible))
        return exp.GT(this=exp.column("c1"), expression=exp.Literal.number(0))

    # -- statements --------------------------------------------------------------------------------

    def target(self, *, reads: bool) -> exp.Table:
        name = self.draw(st.sampled_from(self.write_pool))
        self.script.writes.add(name.reported)
        if reads and name not in self.script.created:
            self.script.reads.add(name.reported)
        return name.table()

    def statement(self) -> exp.Expr:
        kinds = ["select", "insert_select", "insert_values", "ctas", "update", "delete"]
        if self.dialect in MERGE:
            kinds.append("merge")
        kind = self.draw(st.sampled_from(kinds))
        if kind == "select":
            return self.query((), top=True)
        if kind == "insert_select":
            return exp.Insert(this=self.target(reads=False), expression=self.query((), top=True))
        if kind == "insert_values":
            row = exp.Tuple(expressions=[self.scalar(())])
            return exp.Insert(
                this=exp.Schema(this=self.target(reads=False), expressions=[exp.to_identifier("c1")]),
                expression=exp.Values(expressions=[row]),
            )
        if kind == "ctas":
            name = self.draw(st.sampled_from(self.write_pool))
            create = exp.Create(this=name.table(), kind="TABLE", expression=self.query((), top=True))
            self.script.writes.add(name.reported)
            self.script.created.add(name)
            return create
        if kind == "update":
            target = self.target(reads=True)
            update = exp.Update(
                this=target, expressions=[exp.EQ(this=exp.column("c1"), expression=self.scalar(()))]
            )
            if self.dialect in UPDATE_FROM and self.draw(st.booleans()):
                update.set("from_", exp.From(this=self.read_table(())))
            if self.draw(st.booleans()):
                update.set("where", exp.Where(this=self.condition(())))
            return update
        if kind == "delete":
            return exp.Delete(this=self.target(reads=True), where=exp.Where(this=self.condition(())))
        merge = _MERGE_TEMPLATE.copy()
        target = self.target(reads=True)
        target.set("alias", exp.TableAlias(this=exp.to_identifier("t")))
        merge.set("this", target)
        if self.draw(st.booleans()):
            source: exp.Expr = self.read_table(())
            source.set("alias", exp.TableAlias(this=exp.to_identifier("s")))
        else:
            source = exp.Subquery(this=self.query(()), alias=exp.TableAlias(this=exp.to_identifier("s")))
        merge.set("using", source)
        return merge


def _comment(draw: st.DrawFn) -> str:
    words = draw(
        st.lists(st.sampled_from(["note", "FROM", "tb_hidden", "select", "x1", "*", ";"]), max_size=4)
    )
    text = " ".join(words)
    return draw(st.sampled_from([f" -- {text}\n", f" /* {text} */ "]))


def _with_comments(draw: st.DrawFn, sql: str) -> str:
    """Ordinary comments at random spaces: generated SQL has no spaces inside a token.

    Not right after a bare keyword: sqlglot reads ``GROUP /* c */ BY`` as an error, and the
    property is more telling when the SQL parses.
    """
    pieces = sql.split(" ")
    spots = [i for i, piece in enumerate(pieces) if not (piece.isalpha() and piece.isupper())]
    for _ in range(draw(st.integers(0, 3)) if spots else 0):
        at = draw(st.sampled_from(spots))
        pieces[at] = pieces[at] + _comment(draw)
    return " ".join(pieces)


@st.composite
def scripts(draw: st.DrawFn, dialect: str) -> tuple[str, Script]:
    """A multi-statement script in ``dialect`` and what its generator knows about it."""
    bases = draw(st.lists(_SUFFIX, min_size=3, max_size=9, unique=True))
    read_count = draw(st.integers(1, len(bases) // 3 * 2))
    read_bases, rest = bases[:read_count], bases[read_count:]
    write_bases, cte_bases = rest[: max(1, len(rest) // 2)], rest[max(1, len(rest) // 2) :] or ["zz"]
    script = Script(dialect)
    gen = Gen(
        draw=draw,
        script=script,
        read_pool=[_spelling(draw, f"tb_{b}", qualified=True) for b in read_bases],
        write_pool=[_spelling(draw, f"wr_{b}", qualified=True) for b in write_bases],
        cte_bases=[f"cx_{b}" for b in cte_bases],
    )
    statements = []
    for _ in range(draw(st.integers(1, 3))):
        gen.budget = 14
        sql = gen.statement().sql(dialect=dialect)
        statements.append(_with_comments(draw, sql))
    text = ";\n".join(statements)
    if draw(st.booleans()):
        text += ";"
    if draw(st.booleans()):
        text = _comment(draw).lstrip() + text
    return text, script


def _analyze(sql: str, dialect: str) -> SqlTables | None:
    try:
        return tables_in_sql(sql, dialect=dialect)
    except SqlParseError:
        return None


def _check(sql: str, script: Script) -> SqlTables | None:
    result = _analyze(sql, script.dialect)
    if result is None:
        return None
    reads = {name.lower() for name in result.reads}
    writes = {name.lower() for name in result.writes}
    missing_reads = script.reads - reads
    assert not missing_reads, f"reads {sorted(missing_reads)} missing from {sorted(reads)}"
    missing_writes = script.writes - writes
    assert not missing_writes, f"writes {sorted(missing_writes)} missing from {sorted(writes)}"
    ctes_reported = script.ctes_only & reads
    assert not ctes_reported, f"CTE names {sorted(ctes_reported)} reported as tables read"
    return result


@pytest.mark.parametrize("dialect", DIALECTS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_generated_read_and_write_is_reported_or_the_sql_is_refused(
    dialect: str, data: st.DataObject
) -> None:
    sql, script = data.draw(scripts(dialect), label="script")
    _check(sql, script)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_generator_writes_sql_sqlglot_parses_and_the_analysis_mostly_answers(dialect: str) -> None:
    """The generator's own check; prints (with ``-s``) how many scripts ran and how many were refused."""
    counts = {"examples": 0, "refused": 0, "shadowed": 0}

    @settings(
        max_examples=SANITY_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        sql, script = data.draw(scripts(dialect), label="script")
        parsed = sqlglot.parse(sql, read=dialect)  # a generator bug if sqlglot cannot read it back
        assert not any(isinstance(statement, exp.Command) for statement in parsed), sql
        found = {
            ".".join(part.name for part in table.parts).lower()
            for statement in parsed
            if statement is not None
            for table in statement.find_all(exp.Table)
        }
        assert script.reads | script.writes <= found, (sorted(script.reads | script.writes), sorted(found))
        counts["examples"] += 1
        counts["shadowed"] += script.shadowed
        if _check(sql, script) is None:
            counts["refused"] += 1

    run()
    print(
        f"\n{dialect}: property_examples={EXAMPLES} sanity_examples={counts['examples']} "
        f"refused={counts['refused']} shadowed_references={counts['shadowed']}"
    )
    assert counts["examples"] >= SANITY_EXAMPLES // 2
    assert counts["refused"] <= counts["examples"] // 2, counts
