"""`python -m derivlake sql`: read-only, readable, scriptable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from derivlake.config import LakeSettings
from derivlake.lake.catalog import open_lake
from tests.conftest import lake_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lake_with_rows(lake_settings: LakeSettings) -> LakeSettings:
    con = open_lake(lake_settings)
    con.execute(
        "INSERT INTO market.index_prices (index_name, timestamp, price, date) VALUES "
        "('btc_usd', '2025-03-06 07:59:00', 90000.5, '2025-03-06'), "
        "('eth_usd', '2025-03-06 07:59:00', 2200.25, '2025-03-06')"
    )
    con.close()
    return lake_settings


def sql(lake: LakeSettings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), **lake_env(lake)}
    return subprocess.run(
        [sys.executable, "-m", "derivlake", "sql", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
    )


def test_table_csv_json_and_parquet_output(lake_with_rows: LakeSettings, tmp_path: Path) -> None:
    q = "SELECT index_name, price FROM market.index_prices ORDER BY 1"
    table = sql(lake_with_rows, q)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["index_name", "price"] and lines[-1] == "(2 rows)"
    assert lines[2].split() == ["btc_usd", "90000.5"]
    assert (
        sql(lake_with_rows, q, "--format", "csv").stdout
        == "index_name,price\nbtc_usd,90000.5\neth_usd,2200.25\n"
    )
    assert json.loads(sql(lake_with_rows, q, "--format", "json").stdout)[1] == {
        "index_name": "eth_usd",
        "price": 2200.25,
    }
    out = tmp_path / "x.parquet"
    assert sql(lake_with_rows, q, "--format", "parquet", "--output", str(out)).returncode == 0
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 2


def test_errors_are_one_line_and_the_lake_is_read_only(lake_with_rows: LakeSettings) -> None:
    bad = sql(lake_with_rows, "SELECT nope FROM market.index_prices")
    assert (
        bad.returncode == 1 and bad.stderr.startswith("error: Binder Error") and bad.stderr.count("\n") == 1
    )
    write = sql(lake_with_rows, "DELETE FROM market.index_prices")
    assert write.returncode == 1 and "read-only" in write.stderr.lower()
    missing = sql(LakeSettings(home=lake_with_rows.home / "nowhere"), "SELECT 1")
    assert missing.returncode == 1 and "no lake at" in missing.stderr


def test_a_query_left_without_its_parameters_names_them_and_how_to_pass_them(
    lake_with_rows: LakeSettings,
) -> None:
    """It said `Binder Error: Unexpected prepared parameter. This type of statement can't be prepared!`."""
    analyst = ROOT / "include/derivlake/lake/sql/analyst"
    atm = sql(lake_with_rows, "--file", str(analyst / "atm_term_structure.sql"))
    assert (atm.returncode, atm.stdout) == (2, "")
    assert atm.stderr == "error: the query needs $day: pass --param day=VALUE\n"
    book = sql(lake_with_rows, "--file", str(analyst / "book_depth.sql"), "--param", "ts=2026-11-24T08:00:00",
               "--format", "csv")  # fmt: skip
    assert (book.returncode, book.stderr) == (
        2,
        "error: the query needs $symbol: pass --param symbol=VALUE\n",
    )
    done = sql(lake_with_rows, "--file", str(analyst / "atm_term_structure.sql"), "--param", "day=2025-03-06")
    assert done.returncode == 0 and done.stdout.endswith("(0 rows)\n"), done.stderr


def test_max_rows_below_one_is_refused(lake_with_rows: LakeSettings) -> None:
    """`--max-rows 0` printed `(0 rows)` over a result that had two."""
    zero = sql(lake_with_rows, "--max-rows", "0", "SELECT * FROM market.index_prices")
    assert zero.returncode == 2 and zero.stdout == ""
    assert "argument --max-rows: '0' is not a row count of 1 or more" in zero.stderr
    one = sql(lake_with_rows, "--max-rows", "1", "SELECT * FROM market.index_prices")
    assert one.returncode == 0 and one.stdout.endswith("(2 rows (showing 1))\n"), one.stderr


def test_prompt_reads_statements_from_a_pipe(lake_with_rows: LakeSettings) -> None:
    done = sql(
        lake_with_rows, "--format", "csv", stdin="SELECT count(*) AS n\nFROM market.index_prices;\n.quit\n"
    )
    assert done.returncode == 0 and done.stdout == "n\n2\n"


def test_prompt_errors_go_to_stderr_and_a_last_statement_without_its_semicolon_runs(
    lake_with_rows: LakeSettings,
) -> None:
    """Piped, an error was printed among the results (inside the CSV a script was writing), and a last
    statement without `;` was dropped without a word (`echo "SELECT 1" | sql` printed nothing, exit 0)."""
    done = sql(
        lake_with_rows,
        "--format", "csv",
        stdin="SELEC 1;\nSELECT count(*) AS n FROM market.index_prices;\nDELETE FROM market.index_prices;\n"
        "SELECT 2 AS last\n",
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == "n\n2\nlast\n2\n", done.stderr
    errors = done.stderr.splitlines()
    assert len(errors) == 2 and errors[0].startswith("error: Parser Error") and "read-only" in errors[1], (
        errors
    )
    alone = sql(lake_with_rows, stdin="SELECT 42 AS answer\n")
    assert alone.returncode == 0 and alone.stdout.splitlines()[2].strip() == "42", alone


def test_prompt_shows_each_statement_of_a_line_and_refuses_an_output_file(
    lake_with_rows: LakeSettings, tmp_path: Path
) -> None:
    """Two statements on one line showed only the second's result; `--output` was silently ignored."""
    done = sql(lake_with_rows, "--format", "csv", stdin="SELECT 1 AS a; SELECT 2 AS b;\n")
    assert (done.returncode, done.stdout) == (0, "a\n1\nb\n2\n"), done.stderr
    out = tmp_path / "out.csv"
    refused = sql(lake_with_rows, "--output", str(out), stdin="SELECT 1 AS a;\n")
    assert (refused.returncode, refused.stdout) == (2, "") and not out.exists()
    assert refused.stderr == "error: --output needs a query or --file (the prompt writes to the terminal)\n"


def test_parquet_without_output_is_a_usage_error(lake_with_rows: LakeSettings) -> None:
    """It opened the lake and failed with exit 1, as a query does, when the command line itself was wrong."""
    done = sql(lake_with_rows, "SELECT 1", "--format", "parquet")
    assert (done.returncode, done.stdout, done.stderr) == (
        2,
        "",
        "error: --format parquet needs --output FILE\n",
    )


def test_analyst_file_with_parameters_and_the_duckdb_init_script(
    lake_with_rows: LakeSettings, tmp_path: Path
) -> None:
    query = tmp_path / "q.sql"
    query.write_text(
        "-- an analyst's note\nSELECT price FROM market.index_prices WHERE index_name = $name -- eth\n"
    )
    done = sql(lake_with_rows, "--file", str(query), "--param", "name=eth_usd", "--format", "csv")
    assert done.returncode == 0 and done.stdout == "price\n2200.25\n", done.stderr
    init = tmp_path / "lake.sql"
    init.write_text(sql(lake_with_rows, "--init-script").stdout)
    # the real DuckDB CLI of requirements.txt, as the analyst guide runs it
    cli = Path(sys.executable).with_name("duckdb")
    run = subprocess.run(
        [str(cli), "-init", str(init), "-csv", "-c", "SELECT index_name, price FROM market.index_prices ORDER BY 1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-3:] == ["index_name,price", "btc_usd,90000.5", "eth_usd,2200.25"]
    # read-only: the CLI cannot change the lake
    write = subprocess.run(
        [str(cli), "-init", str(init), "-c", "DELETE FROM market.index_prices"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert write.returncode != 0 and "read-only" in (write.stderr + write.stdout).lower()
    # each CLI session spills into a directory of its own, like every lake connection
    spill = [
        subprocess.run([str(cli), "-init", str(init), "-noheader", "-list", "-c", "SELECT current_setting('temp_directory')"],
                       capture_output=True, text=True, timeout=60).stdout.splitlines()[-1]
        for _ in range(2)
    ]  # fmt: skip
    assert spill[0] != spill[1] and all(Path(d).parent == lake_with_rows.spill_root for d in spill), spill


# VmHWM, not getrusage: a child started by vfork inherits the parent's ru_maxrss across exec
PEAK_RSS = """
import re, sys
from derivlake.cli import main
rc = main(sys.argv[1:])
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024, file=sys.stderr)
sys.exit(rc)
"""


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_csv_and_json_to_stdout_stream_in_bounded_memory(lake_with_rows: LakeSettings, fmt: str) -> None:
    """A result 20 times larger must not need more memory: the output is written a chunk at a time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), **lake_env(lake_with_rows)}
    peak_mb, lines = {}, {}
    for rows in (100_000, 2_000_000):
        q = f"SELECT i, 'BTC-27JUN25-' || i || '-C' AS symbol, i / 7 AS x FROM range({rows}) t(i)"
        done = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, "sql", q, "--format", fmt],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        peak_mb[rows] = int(done.stderr.split()[-1])
        lines[rows] = done.stdout
    assert lines[100_000].count("\n") == (100_001 if fmt == "csv" else 100_002)
    assert lines[100_000].startswith(
        "i,symbol,x\n0,BTC-27JUN25-0-C,0.0\n" if fmt == "csv" else '[\n\t{"i":0,'
    )
    if fmt == "json":
        assert len(json.loads(lines[2_000_000])) == 2_000_000
    # measured: streamed, the two peaks are within a few MB; materialised, 2M rows took 440-540 MB more
    assert peak_mb[2_000_000] - peak_mb[100_000] < 60, peak_mb


def test_no_progress_bar_in_the_output(lake_with_rows: LakeSettings) -> None:
    """DuckDB turns its progress bar on where `__main__` has no file (a notebook, a REPL, `python -c` as
    in the test above) and prints it to stdout once a query has run 2 s: on a slow machine it landed in
    the middle of that test's JSON. Lake connections turn it off (a query's own SET can turn it on)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), **lake_env(lake_with_rows)}

    def from_c(query: str) -> str:
        launcher = "import sys; from derivlake.cli import main; sys.exit(main(sys.argv[1:]))"
        args = [sys.executable, "-c", launcher, "sql", query, "--format", "csv"]
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert from_c("SELECT current_setting('enable_progress_bar') AS bar") == "bar\nfalse\n"
    # what the setting prevents: the same bar, shown at once
    assert "100%" in from_c("SET progress_bar_time = 0; SELECT i FROM range(3000000) t(i)")


TYPED = r"""SELECT TIMESTAMP '2025-03-06 07:59:00.123456' AS ts, TIMESTAMPTZ '2025-03-06 07:59:00.5+00' AS tz,
       DATE '2025-03-06' AS d, 'a\x00b'::BLOB AS raw, 9007199254740993::HUGEINT AS big, [1, 2] AS levels,
       true AS ok, INTERVAL 90 MINUTE AS span, NULL::DOUBLE AS missing, 'x,"y"' AS text"""


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_stdout_holds_the_same_bytes_as_the_output_file(
    lake_with_rows: LakeSettings, tmp_path: Path, fmt: str
) -> None:
    """Every type comes out as DuckDB writes it to a file: microseconds, dates, blobs, 128-bit integers,
    lists (through pandas they were cut to milliseconds, became datetimes, `{}`, floats and numpy reprs)."""
    out = tmp_path / f"typed.{fmt}"
    assert sql(lake_with_rows, TYPED, "--format", fmt, "--output", str(out)).returncode == 0
    shown = sql(lake_with_rows, TYPED, "--format", fmt)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == out.read_text()
    if fmt == "json":
        row = json.loads(shown.stdout)[0]
        assert row["ts"] == "2025-03-06 07:59:00.123456" and row["d"] == "2025-03-06"
        assert row["big"] == 9007199254740993 and row["levels"] == [1, 2] and row["missing"] is None
    else:
        assert shown.stdout.splitlines()[1].startswith(
            "2025-03-06 07:59:00.123456,2025-03-06 07:59:00.5+00,2025-03-06,"
        )


def test_statements_params_and_pipes(lake_with_rows: LakeSettings, tmp_path: Path) -> None:
    # parquet with a parameter (the parameter used to be bound after the parquet COPY ran)
    out = tmp_path / "btc.parquet"
    q = "SELECT price FROM market.index_prices WHERE index_name = $name"
    done = sql(lake_with_rows, q, "--param", "name=btc_usd", "--format", "parquet", "--output", str(out))
    assert done.returncode == 0, done.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(out).column("price").to_pylist() == [90000.5]
    bad = sql(lake_with_rows, q, "--param", "name")
    assert bad.returncode == 2 and bad.stderr == "error: --param 'name' is not NAME=VALUE\n"
    # statements that are not a query, and several statements: the last one's result is written
    shown = sql(lake_with_rows, "DESCRIBE market.index_prices", "--format", "csv")
    assert shown.returncode == 0 and shown.stdout.splitlines()[1].startswith("index_name,VARCHAR,"), (
        shown.stderr
    )
    pragma = sql(lake_with_rows, "PRAGMA version", "--format", "json")
    assert pragma.returncode == 0 and json.loads(pragma.stdout)[0]["library_version"], pragma.stderr
    two = sql(lake_with_rows, "SET threads = 1; SELECT current_setting('threads') AS t", "--format", "csv")
    assert two.stdout == "t\n1\n", two.stderr
    # the prompt: each result follows the one before it (DuckDB opening stdout itself overwrote them)
    prompt = sql(lake_with_rows, "--format", "csv", stdin="SELECT 1 AS a;\nSELECT 2 AS b;\n")
    assert prompt.stdout == "a\n1\nb\n2\n", prompt.stderr
    # a reader that stops early is no error
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), **lake_env(lake_with_rows)}
    head = subprocess.run(
        f"{sys.executable} -m derivlake sql --format csv 'SELECT * FROM range(3000000)' | head -2",
        shell=True, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert head.stdout == "range\n0\n" and head.stderr == "", head.stderr
