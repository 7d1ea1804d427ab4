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


def test_imgxlate_train_prints_errors_the_same_way(tmp_path: Path) -> None:
    pytest.importorskip("torch")  # export imports the trainer
    from typer.testing import CliRunner

    from imgxlate.train.cli import app

    missing = tmp_path / "run[bold]1[/]"
    res = CliRunner().invoke(app, ["export", str(missing), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
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
