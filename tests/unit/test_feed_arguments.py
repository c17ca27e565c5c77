"""`feed simulate|replay` refuse values they cannot mean, naming the option, before reaching a broker.

KAFKA_BOOTSTRAP_SERVERS points at a port nobody listens on: a check that came after the broker's would
fail these tests with `no Kafka broker answered`."""

from __future__ import annotations

from pathlib import Path

import pytest

from derivlake.cli import main
from derivlake.feed.replay import NotACapture, check_capture
from tests.conftest import free_port

WINDOW = ["--start", "2026-12-01", "--end", "2026-12-02"]


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")


@pytest.mark.parametrize("end", ["2026-12-01", "2026-12-02"])
def test_simulate_refuses_an_end_not_after_the_start(end: str, capsys) -> None:
    """It printed `produced 11 messages` and exited 0."""
    assert main(["feed", "simulate", "--start", "2026-12-02", "--end", end]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: --end {end}T00:00:00+00:00 is not after --start 2026-12-02T00:00:00+00:00: the feed simulates "
        "[start, end), so give an end later than the start\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bad-rate", "2"], "argument --bad-rate: '2' is not a probability: give a number from 0 to 1"),
        (["--dup-rate", "-0.1"], "argument --dup-rate: '-0.1' is not a probability"),
        (["--late-rate", "1.5"], "argument --late-rate: '1.5' is not a probability"),
        (["--gap-rate", "often"], "argument --gap-rate: 'often' is not a probability"),
        (["--rate", "-3"], "argument --rate: '-3' is not a number of 0 or more"),
    ],
)
def test_simulate_refuses_a_fault_rate_outside_0_to_1(args: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["feed", "simulate", *WINDOW, *args])
    assert ended.value.code == 2 and message in capsys.readouterr().err


def test_a_malformed_date_names_the_option_and_the_format(capsys) -> None:
    """argparse said `invalid _iso value: 'yesterday'`: the name of the function that parsed it."""
    with pytest.raises(SystemExit) as ended:
        main(["feed", "simulate", "--start", "yesterday", "--end", "2026-12-02"])
    err = capsys.readouterr().err
    assert ended.value.code == 2 and "_iso" not in err
    assert (
        "argument --start: 'yesterday' is not an ISO time: give e.g. 2026-12-01 or 2026-12-01T08:00:00Z"
        in err
    )


def test_replay_refuses_a_file_that_is_not_a_capture(tmp_path: Path, capsys) -> None:
    """It printed `replayed 0 messages` and exited 0."""
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n\nworld\n")
    assert main(["feed", "replay", str(notes)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {notes}: none of its 2 lines is a capture line; expected the fixtures/deribit-ws"
    )
    empty_dir = tmp_path / "captures"
    empty_dir.mkdir()
    assert main(["feed", "replay", str(empty_dir)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {empty_dir} holds no *.capture files")


def test_real_captures_and_an_empty_file_pass_the_check(fixtures_dir: Path, tmp_path: Path) -> None:
    check_capture(fixtures_dir / "deribit-ws-2021-07-22.capture")
    check_capture(fixtures_dir / "deribit-rest-instruments.capture")
    check_capture(fixtures_dir)  # a folder of captures
    empty = tmp_path / "empty.capture"
    empty.write_text("")
    check_capture(empty)  # an empty capture: replays 0 messages
    empty.write_text("123.4: not json\n")
    with pytest.raises(NotACapture):
        check_capture(empty)
