"""imgxlate.cli.common: the one error / warning printer of `imgxlate` and `imgxlate-train`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from imgxlate.cli.common import print_error, print_warning
from imgxlate.errors import UsageError


def test_messages_are_printed_literally_not_as_markup() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=200, color_system=None)
    print_error(UsageError("no file [bold]x[/] in 'a[1]'"), console)
    print_warning("tile [256] too big", console)
    assert buf.getvalue().splitlines() == ["error: no file [bold]x[/] in 'a[1]'", "warning: tile [256] too big"]
    # a name with a newline in a message cannot start a line of its own (a fake "failed:" line)
    buf = io.StringIO()
    console = Console(file=buf, width=200, color_system=None)
    print_error("cannot read 'a\nfailed: b.jpg'", console)
    print_warning("x.jpg\r: note", console)
    assert buf.getvalue().splitlines() == ["error: cannot read 'a\\nfailed: b.jpg'", "warning: x.jpg\\r: note"]


def test_imgxlate_train_prints_errors_the_same_way(tmp_path: Path) -> None:
    pytest.importorskip("torch")  # export imports the trainer
    from typer.testing import CliRunner

    from imgxlate.train.cli import app

    missing = tmp_path / "run[bold]1[/]"
    res = CliRunner().invoke(app, ["export", str(missing), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2  # a missing checkpoint is a usage error, as a missing input
    assert f"error: checkpoint '{missing}' does not exist" in res.stderr.replace("\n", "")


def test_a_stop_signal_inside_defer_stop_is_held_until_the_block_ends() -> None:
    """Model loading imports native extensions; a KeyboardInterrupt raised inside their module
    initialisation aborts the process, so the signal waits for the block's end (then it is raised)."""
    import os
    import signal

    from imgxlate.cli.common import defer_stop, stop_signals

    with defer_stop():  # outside a command: nothing to hold
        pass
    reached = []
    with stop_signals() as stop:
        with pytest.raises(KeyboardInterrupt):
            with defer_stop():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # Python runs the handler between bytecodes: it must not raise here
                    reached.append(1)
            reached.append("after")  # not reached: raised as the block ends
        assert stop.signum == signal.SIGINT and not stop.held and stop.deferring == 0
    assert len(reached) == 1000


def test_progress_prints_plain_lines_where_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A log file or a scheduler's output gets a line per task every few seconds and one at the end
    (rich draws nothing there until the bar stops); a terminal gets the bar only; quiet, nothing."""
    from imgxlate.cli import common

    def run(terminal: bool, quiet: bool = False, every: float = 0.0) -> list[str]:
        buf = io.StringIO()
        monkeypatch.setattr(common, "stderr", Console(file=buf, width=200, color_system=None, force_terminal=terminal))
        with common.progress_bar(quiet, log_every=every) as progress:
            task = progress.add_task("converting \\[a]", total=3, rate="")  # markup, as escape() gives
            for i in range(3):
                progress.update(task, advance=1, rate=f"{i + 1}.00 img/s")
        return buf.getvalue().splitlines()

    assert run(False) == ["converting [a] 1/3 (33%) 1.00 img/s", "converting [a] 2/3 (67%) 2.00 img/s",
                          "converting [a] 3/3 (100%) 3.00 img/s"]
    # a video whose frame count is unknown: lines go on (the first 'done' used to stop them), the end once
    buf = io.StringIO()
    monkeypatch.setattr(common, "stderr", Console(file=buf, width=200, color_system=None, force_terminal=False))
    with common.progress_bar(False, log_every=0.0) as progress:
        task = progress.add_task("clip.webm", total=None, rate="")
        for done in range(1, 4):
            progress.update(task, completed=done, total=done, rate="")
    assert buf.getvalue().splitlines() == ["clip.webm 1/1 (100%)", "clip.webm 2/2 (100%)", "clip.webm 3/3 (100%)"]
    assert run(False, every=3600) == ["converting [a] 3/3 (100%) 3.00 img/s"]  # only the end within the period
    assert run(False, quiet=True) == []
    assert not any("3/3 (100%)" in line for line in run(True))
    # a task that never moved (a video that failed before its first frame) leaves no "clip.mp4 0"
    buf = io.StringIO()
    monkeypatch.setattr(common, "stderr", Console(file=buf, width=200, color_system=None, force_terminal=False))
    with common.progress_bar(False, log_every=3600) as progress:
        progress.add_task("clip.mp4", total=None, rate="")
    assert buf.getvalue() == ""
