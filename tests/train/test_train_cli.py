"""imgxlate-train end to end: CliRunner in process (one training run with export, shared), plus
subprocesses for the exit codes and messages a user sees."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import write_images
from typer.testing import CliRunner

from imgxlate.metadata import read_onnx_metadata
from imgxlate.train.cli import app
from imgxlate.train.loop import load_checkpoint
from imgxlate.train.networks import build_generator

TINY = [
    "--ngf",
    "8",
    "--ndf",
    "8",
    "--n-blocks",
    "2",
    "--image-size",
    "32",
    "--load-size",
    "36",
    "--workers",
    "0",
    "--pool-size",
    "3",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def run_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("cli")
    write_images(root / "horses", 4, seed=1)
    write_images(root / "zebras" / "nested", 3, seed=2, tint=60)
    (root / "zebras" / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    out = root / "my run"
    result = CliRunner().invoke(
        app,
        [
            "--domain-a",
            str(root / "horses"),
            "--domain-b",
            str(root / "zebras"),
            "--out",
            str(out),
            "--max-steps",
            "3",
            "--sample-every",
            "2",
            "--checkpoint-every",
            "2",
            "--log-every",
            "1",
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "corrupt.jpg" in result.output  # skipped with a warning, not a crash
    return out, result.output


@pytest.fixture(scope="module")
def run(run_result: tuple[Path, str]) -> Path:
    return run_result[0]


@pytest.fixture(scope="module")
def run_output(run_result: tuple[Path, str]) -> str:
    return run_result[1]


def test_training_writes_everything(run: Path) -> None:
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "samples" / "step_000002.png").is_file()
    assert len((run / "log.jsonl").read_text().splitlines()) == 3
    for name in ("a2b.onnx", "b2a.onnx", "README.md"):
        assert (run / "model" / name).is_file()
    assert not list(run.rglob(".imgxlate-tmp-*"))
    assert load_checkpoint(run)["step"] == 3


def test_exported_models_match_checkpoint_and_carry_metadata(run: Path) -> None:
    import onnxruntime as ort

    ckpt = load_checkpoint(run)
    for direction, key, source, target in (
        ("a2b", "G_ab", "horses", "zebras"),
        ("b2a", "G_ba", "zebras", "horses"),
    ):
        path = run / "model" / f"{direction}.onnx"
        meta = read_onnx_metadata(str(path))
        assert (meta.direction, meta.source, meta.target, meta.pair) == (
            direction,
            source,
            target,
            "horses2zebras",
        )
        assert meta.steps == 3 and meta.image_size == 32
        assert meta.architecture["ngf"] == 8 and meta.architecture["n_blocks"] == 2
        t = meta.training
        assert t["dataset_sizes"] == {"horses": 4, "zebras": 3}
        assert t["steps"] == 3 and t["batch_size"] == 1 and t["precision"] == "fp32"
        assert t["device"].startswith("CPU") and t["wall_time_s"] > 0 and t["images_per_s"] > 0
        assert t["command"].startswith("imgxlate-train")
        gen = build_generator(ckpt["generator_config"])
        gen.load_state_dict(ckpt["models"][key])
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for h, w in ((32, 44), (22, 14)):  # a multiple of 4 and not
            x = torch.rand(1, 3, h, w) * 2 - 1
            with torch.no_grad():
                ref = gen.eval()(x).numpy()
            assert np.abs(sess.run(None, {"input": x.numpy()})[0] - ref).max() < 1e-4


def test_export_subcommand_and_resume(run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["export", str(run / "checkpoints" / "last.pt"), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, result.output
    assert read_onnx_metadata(str(tmp_path / "m" / "b2a.onnx")).steps == 3
    result = runner.invoke(app, ["--resume", str(run), "--max-steps", "4", "--no-export", "-q"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run)["step"] == 4
    # a folder that holds a model is not replaced without --overwrite
    again = ["export", str(run), "--out", str(tmp_path / "m")]
    result = runner.invoke(app, again)
    assert result.exit_code == 2 and "already holds a2b.onnx, b2a.onnx, README.md" in result.output and "--overwrite" in result.output
    assert read_onnx_metadata(str(tmp_path / "m" / "b2a.onnx")).steps == 3
    result = runner.invoke(app, [*again, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert read_onnx_metadata(str(tmp_path / "m" / "b2a.onnx")).steps == 4
    result = runner.invoke(app, ["--resume", str(run), "--ngf", "16"])
    assert result.exit_code == 2 and "cannot change when resuming" in result.output


def test_a_stop_during_export_leaves_no_temp_file(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`imgxlate-train export` had no stop handler of its own: the entry's first handler ended the
    process where it stood (os._exit), leaving the written temp files in --out."""
    from imgxlate.train import export

    real = export._write_read_back

    def stopped(tmp: Path, data: bytes) -> None:
        real(tmp, data)  # a temp file written ...
        raise KeyboardInterrupt  # ... and the stop comes

    monkeypatch.setattr(export, "_write_read_back", stopped)
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "m"), "--json"])
    assert result.exit_code == 130, result.output
    assert json.loads(result.stdout)["error"]["message"].startswith("interrupted: nothing was exported")
    assert not (tmp_path / "m").exists() or list((tmp_path / "m").iterdir()) == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "imgxlate.train", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    write_images(tmp_path / "b", 1, seed=0)
    (tmp_path / "empty").mkdir()
    # real processes: exit codes and stderr exactly as a user sees them
    missing = _cli(
        "--domain-a",
        str(tmp_path / "nope"),
        "--domain-b",
        str(tmp_path / "b"),
        "--out",
        str(tmp_path / "r"),
        *TINY,
    )
    assert missing.returncode == 2  # the usage code, as a missing convert input
    assert (
        "nope" in missing.stderr and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
    bad = _cli("--domain-a", str(tmp_path / "b"), "--domain-b", str(tmp_path / "b"), "--precision", "fp8")
    assert bad.returncode == 2 and "fp8" in bad.stderr and "Traceback" not in bad.stderr
    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("imgxlate-train ")
    # in process for the rest
    runner = CliRunner()
    empty = runner.invoke(
        app,
        [
            "--domain-a",
            str(tmp_path / "empty"),
            "--domain-b",
            str(tmp_path / "b"),
            "--out",
            str(tmp_path / "r"),
            *TINY,
        ],
    )
    assert empty.exit_code == 2 and "has no image files" in empty.output and "empty" in empty.output
    noargs = runner.invoke(app, [])
    assert noargs.exit_code == 2 and "--domain-a" in noargs.output
    assert not (tmp_path / "r").exists()
    # a file that is not a checkpoint: no advice from PyTorch to load it with weights_only=False (that
    # runs any code the file holds)
    (tmp_path / "photo.pt").write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not a checkpoint")
    notckpt = runner.invoke(app, ["--resume", str(tmp_path / "photo.pt")])
    assert notckpt.exit_code == 1, notckpt.output
    assert "(not a file of tensors that loads safely); it is damaged or not an imgxlate-train checkpoint" \
        in notckpt.output
    assert "weights_only" not in notckpt.output and "trusted source" not in notckpt.output


def test_piped_progress_lines_and_exporting_message(run_output: str) -> None:
    # stderr is not a terminal under CliRunner: a plain line per --log-every step, and the export said
    lines = [line for line in run_output.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("img/s" in line and "ETA" in line and "cycle_a" in line for line in lines)
    assert "exporting a2b.onnx, b2a.onnx" in run_output


def test_json_summary_threads_zero_and_out_that_is_a_file(tmp_path: Path) -> None:
    write_images(tmp_path / "a", 2, seed=0)
    write_images(tmp_path / "b", 2, seed=1)
    common = ["--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "b"), *TINY]
    done = _cli(
        *common,
        "--out",
        str(tmp_path / "r"),
        "--max-steps",
        "1",
        "--no-export",
        "--json",
        "--method",
        "cut",
        "--num-patches",
        "8",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["method"] == "cut" and summary["steps"] == 1 and summary["model_dir"] is None
    assert set(summary["losses"]) == {"G_ab", "nce_ab", "nce_idt_ab", "D_b"}
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        bad = _cli(*common, "--out", str(out), "--json")
        assert bad.returncode == 2 and "is a file" in bad.stderr and "Traceback" not in bad.stderr
        assert json.loads(bad.stdout)["error"]["exit_code"] == 2
    typo = _cli(*common, "--method", "cutt")
    assert typo.returncode == 2 and "cutt" in typo.stderr


def test_threads_zero_means_what_convert_means(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgxlate import engine
    from imgxlate.engine import default_threads
    from imgxlate.train.runtime import cpu_threads

    monkeypatch.setattr(engine, "usable_cpus", lambda: 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(0) == default_threads() == 3
    assert cpu_threads(2) == 2
    assert cpu_threads(100_000) == 4  # an extra zero typed: the CPUs there are
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads(0) == default_threads() >= 1


def test_options_are_generated_from_the_config() -> None:
    from dataclasses import fields

    from imgxlate.train.config import TrainConfig

    help_text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).output
    for f in fields(TrainConfig):
        flag = (f.metadata.get("flags") or (f"--{f.name.replace('_', '-')}",))[0].split("/")[0]
        assert flag in help_text, flag
    assert "--beta2" in help_text and "--export-fp16" not in help_text


def _start_endless_run(tmp_path: Path, run: Path, *extra: str, **popen: object) -> subprocess.Popen[str]:
    """A tiny run of no end (no checkpoint before its end) in a process of its own, once it has logged 3
    steps. ``extra``: more options (the last --workers counts); ``popen``: more Popen arguments."""
    import time

    write_images(tmp_path / "a", 2, seed=0)
    write_images(tmp_path / "b", 2, seed=1)
    args = ["--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "b"), *TINY, "--out", str(run),
            "--epochs", "100000", "--epochs-decay", "0", "--checkpoint-every", "0", "--log-every", "1",
            "--no-export", *extra]
    proc = subprocess.Popen([sys.executable, "-m", "imgxlate.train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            **popen)  # type: ignore[call-overload]
    log = run / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()[-2000:] if proc.stderr else ""
    return proc


@pytest.mark.parametrize("to_group", [False, True], ids=["process", "group-with-workers"])
def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path: Path, to_group: bool) -> None:
    """SIGTERM (a scheduler's time limit, preemption, ``docker stop``) stops a run as Ctrl-C does:
    a checkpoint of the step reached, the message naming --resume, no traceback; the run resumes.
    Before, SIGTERM killed the process and the steps since the last checkpoint were lost. ``timeout``,
    Slurm and systemd signal every process of the run: the data loader's workers died of it, and the
    run failed ("DataLoader worker ... is killed by signal: Terminated", exit 1, no checkpoint)."""
    import signal

    run = tmp_path / "run"
    proc = _start_endless_run(tmp_path, run, *(["--workers", "2"] if to_group else []), "--json",
                              start_new_session=to_group)
    assert not (run / "checkpoints" / "last.pt").exists()  # --checkpoint-every 0: none before the end
    if to_group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if to_group:
        # Known, rare (1 of ~10 runs under load): multiprocessing's fd-sharing thread, which PyTorch uses
        # to pass batches, prints a ConnectionResetError traceback when the workers go during a transfer.
        # Everything else of the stop is as asserted; only that one traceback is let through.
        err = re.sub(r"Traceback \(most recent call last\):\n(?:  .*\n)*?  File \".*multiprocessing/"
                     r"resource_sharer.py\".*\n(?:  .*\n)*ConnectionResetError: .*\n", "", err)
    assert proc.returncode == 143 and "Traceback" not in err and "error" not in err, err  # 128 + SIGTERM
    assert "stopped by SIGTERM" in err and f"checkpoint saved, continue with imgxlate-train --resume {run}" in err, err
    step = load_checkpoint(run)["step"]
    assert step >= 3
    summary = json.loads(out)
    assert summary["interrupted"] and summary["step"] == step and summary["exit_code"] == 143, summary
    resumed = _cli("--resume", str(run), "--max-steps", str(step + 1), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == step + 1


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the loading processes in /proc")
def test_a_loading_process_killed_saves_the_steps_done_and_says_what_to_do(tmp_path: Path) -> None:
    """The out-of-memory killer's usual victim is a data-loading process. PyTorch then raised its
    RuntimeError ("DataLoader worker (pid ...) is killed by signal: Killed.") from its SIGCHLD handler,
    mostly in the middle of a step: a traceback, exit 1 and every step since the last checkpoint lost
    (with the default --checkpoint-every 1000, up to hours on a CPU). Now the step under way finishes,
    the run is saved, and the message says what happened and how to go on."""
    import signal

    run = tmp_path / "run"
    proc = _start_endless_run(tmp_path, run, "--workers", "1")
    workers = _children(proc.pid)
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err, err
    step = load_checkpoint(run)["step"]
    assert step >= 3
    assert f"a data-loading process killed by SIGKILL (most often the system ending it for lack of memory); " \
           f"step {step} is saved" in err, err
    assert f"fewer --workers: 1 ran, and 0 loads in the trainer's own process; fewer other programs): " \
           f"imgxlate-train --resume {run}" in err, err
    resumed = _cli("--resume", str(run), "--max-steps", str(step + 1), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == step + 1


def test_a_copied_run_resumes_in_its_own_folder_and_unchanged_settings_are_accepted(
    run: Path, tmp_path: Path
) -> None:
    """Resuming a copy wrote into the original run (its stored --out); giving a stored setting again
    (the first command plus --resume) was refused as a change."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    step = load_checkpoint(run)["step"]
    result = CliRunner().invoke(app, ["--resume", str(copy), "--max-steps", str(step + 1), "--image-size", "32",
                                      "--ngf", "8", "--no-export", "-q"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(copy)["step"] == step + 1
    assert load_checkpoint(run)["step"] == step  # the original is untouched
    changed = CliRunner().invoke(app, ["--resume", str(copy), "--image-size", "64"])
    assert changed.exit_code == 2 and "--image-size cannot change when resuming" in changed.output
    # a --max-steps below the checkpoint's step: said, not "at step 4 of 1" and an export
    past = CliRunner().invoke(app, ["--resume", str(copy), "--max-steps", "1"])
    assert past.exit_code == 2 and f"at step {step + 1}, past the 1 steps" in past.output, past.output
    assert "imgxlate-train export " in past.output and "--out FOLDER" in past.output
    assert load_checkpoint(copy)["step"] == step + 1
    # the first command again plus --resume COPY: its --out (the original's) is the stored value given
    # again, so the copy goes on in its own folder
    copy2 = tmp_path / "copy2"
    shutil.copytree(run, copy2)
    again = CliRunner().invoke(app, ["--resume", str(copy2), "--out", str(run), "--max-steps", str(step + 2),
                                     "--no-export", "-q"])
    assert again.exit_code == 0, again.output
    assert load_checkpoint(copy2)["step"] == step + 2 and load_checkpoint(run)["step"] == step
    # once resumed there, the copy's own folder is its --out: the original's is another run now
    clash = CliRunner().invoke(app, ["--resume", str(copy2), "--out", str(run), "--max-steps", str(step + 3)])
    assert clash.exit_code == 2 and "already holds another training run" in clash.output, clash.output
    # an --out of its own that holds another run is refused, not overwritten
    other = CliRunner().invoke(app, ["--resume", str(copy), "--out", str(tmp_path / "elsewhere"), "--max-steps",
                                     str(step + 3), "--no-export", "-q"])
    assert other.exit_code == 0, other.output  # a fresh folder: fine
    clash = CliRunner().invoke(app, ["--resume", str(copy), "--out", str(tmp_path / "elsewhere"), "--max-steps",
                                     str(step + 4)])
    assert clash.exit_code == 2 and "already holds another training run" in clash.output, clash.output
    assert load_checkpoint(tmp_path / "elsewhere")["step"] == step + 3
    # a domain folder given when resuming that holds other images: it goes on, and says so
    write_images(tmp_path / "fewer", 1, seed=5)
    moved = CliRunner().invoke(app, ["--resume", str(copy), "--domain-a", str(tmp_path / "fewer"), "--max-steps",
                                     str(step + 2), "--no-export"])
    assert moved.exit_code == 0, moved.output
    assert "domain A" in moved.output and "holds other images than the run was trained on (1 now, 4 then" \
        in moved.output
    # the run given as its checkpoints folder: it goes on in the run, not in a run inside checkpoints/
    inner = CliRunner().invoke(app, ["--resume", str(copy / "checkpoints"), "--max-steps", str(step + 3),
                                     "--no-export", "-q"])
    assert inner.exit_code == 0, inner.output
    assert load_checkpoint(copy)["step"] == step + 3 and not (copy / "checkpoints" / "checkpoints").exists()
    # a loose checkpoint file whose run folder holds another checkpoint: where to go is asked for
    loose = tmp_path / "backup.pt"
    shutil.copyfile(run / "checkpoints" / "last.pt", loose)
    asked = CliRunner().invoke(app, ["--resume", str(loose), "--max-steps", str(step + 1)])
    assert asked.exit_code == 2 and "say where the run goes with --out" in asked.output, asked.output
    assert load_checkpoint(run)["step"] == step


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--lambda-cycle", "inf"], "--lambda-cycle must be a finite number"),
        (["--image-size", "16"], "use at least 24"),  # 3 discriminator layers (the default)
        (["--image-size", "44", "--n-layers-d", "4"], "use at least 48"),
    ],
)
def test_values_the_networks_cannot_take_are_usage_errors(tmp_path: Path, args: list[str], said: str) -> None:
    write_images(tmp_path / "a", 1, seed=0)
    result = CliRunner().invoke(app, ["--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "a"),
                                      "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2 and said in result.output, result.output
    assert not (tmp_path / "r").exists()


def test_a_run_folder_inside_the_data_and_one_folder_for_both_domains_are_refused(tmp_path: Path) -> None:
    """Folders are searched recursively: a run inside --domain-a would train on its own sample grids."""
    write_images(tmp_path / "a", 1, seed=0)
    write_images(tmp_path / "b", 1, seed=1)
    for out, option in ((tmp_path / "a" / "run", "--domain-a"), (tmp_path / "b", "--domain-b")):
        result = CliRunner().invoke(app, ["--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "b"),
                                          "--out", str(out), *TINY])
        assert result.exit_code == 2 and f"is inside {option}" in result.output, result.output
    assert not (tmp_path / "a" / "run").exists()
    result = CliRunner().invoke(app, ["--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "a" / "."),
                                      "--out", str(tmp_path / "r"), *TINY])
    assert result.exit_code == 2 and "are the same folder" in result.output, result.output
    # a run that already lives inside its data (made before this check) is resumed where it is; only
    # moving it to another --out inside the data is refused
    result = CliRunner().invoke(app, ["--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "b"),
                                      "--out", str(tmp_path / "r"), "--max-steps", "1", "--no-export", *TINY])
    assert result.exit_code == 0, result.output
    shutil.move(tmp_path / "r", tmp_path / "a" / "r")
    result = CliRunner().invoke(app, ["--resume", str(tmp_path / "a" / "r"), "--max-steps", "2", "--no-export"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["--resume", str(tmp_path / "a" / "r"), "--max-steps", "3", "--no-export",
                                      "--out", str(tmp_path / "a" / "r2")])
    assert result.exit_code == 2 and "is inside --domain-a" in result.output, result.output


def test_ctrl_c_before_the_first_step_says_so_and_gives_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Typer turns a KeyboardInterrupt into a silent exit 130: with --json, stdout was empty."""
    from imgxlate.train import loop

    write_images(tmp_path / "a", 2, seed=0)
    write_images(tmp_path / "b", 2, seed=1)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the data and networks are being set up

    monkeypatch.setattr(loop, "setup_runtime", interrupted)
    result = CliRunner().invoke(app, ["--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "b"),
                                      "--out", str(tmp_path / "run"), "--max-steps", "1", "--json", *TINY])
    assert result.exit_code == 130, result.output
    assert json.loads(result.stdout) == {"error": {
        "message": "interrupted before the first step; nothing was trained or saved", "type": "Interrupted",
        "exit_code": 130}}
    assert "interrupted before the first step" in result.stderr


def test_ctrl_c_while_the_last_checkpoint_is_saved_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop held by the guard until the save ends is reported as the stop of a saved run."""
    import contextlib

    write_images(tmp_path / "a", 2, seed=0)
    write_images(tmp_path / "b", 2, seed=1)
    calls = []

    @contextlib.contextmanager
    def guard():  # as defer_stop does when a signal came during the block: raised at its end
        yield
        calls.append(1)
        if len(calls) == 2:  # the step's guard, then the one around closing and saving
            raise KeyboardInterrupt

    from imgxlate.train import loop
    from imgxlate.train.config import TrainConfig

    cfg = TrainConfig(domain_a=str(tmp_path / "a"), domain_b=str(tmp_path / "b"), out=str(tmp_path / "run"),
                      max_steps=1, export=False, ngf=8, ndf=8, n_blocks=2, image_size=32, load_size=36, workers=0,
                      pool_size=3, threads=1)
    with pytest.raises(loop.TrainingInterrupted) as info:
        loop.train(cfg, step_guard=guard)
    assert info.value.step == 1 and load_checkpoint(tmp_path / "run")["step"] == 1
    # without a guard (a library caller) a stop that cuts the save itself is not reported as saved
    import dataclasses

    def cut(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", cut)
    with pytest.raises(KeyboardInterrupt):
        loop.train(dataclasses.replace(cfg, out=str(tmp_path / "run2")))
    assert not (tmp_path / "run2" / "checkpoints" / "last.pt").exists()


def test_ctrl_c_during_the_export_says_the_export_did_not_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgxlate.train import loop

    write_images(tmp_path / "a", 2, seed=0)
    write_images(tmp_path / "b", 2, seed=1)

    def cut_short(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # what the stop handler raises when Ctrl-C lands in the export

    monkeypatch.setattr(loop, "export_checkpoint", cut_short)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "b"),
                                      "--out", str(run), "--max-steps", "1", "--json", *TINY])
    assert result.exit_code == 130, result.output
    said = json.loads(result.stdout.splitlines()[-1])
    assert said["interrupted"] is True and said["stage"] == "export" and said["step"] == 1
    assert "while exporting" in said["message"] and f"--resume {run}" in said["message"]
    assert load_checkpoint(run)["step"] == 1


def test_a_domain_with_no_decodable_image_is_one_plain_message_with_workers(tmp_path: Path) -> None:
    """Files whose header reads and whose pixels do not (cut short): found, then unreadable in the
    data loader's workers, whose error reached the user as the worker's whole traceback."""
    rng = np.random.default_rng(0)
    write_images(tmp_path / "a", 2, seed=0)
    (tmp_path / "b").mkdir()
    for i in range(2):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
        (tmp_path / "b" / f"{i}.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 6 // 10])
    result = _cli("--domain-a", str(tmp_path / "a"), "--domain-b", str(tmp_path / "b"), "--out",
                  str(tmp_path / "r"), "--json", *TINY, "--workers", "2")  # the last --workers counts
    assert result.returncode == 1, result.stderr[-2000:]
    said = json.loads(result.stdout)["error"]  # the error object `imgxlate` writes
    assert said["message"].startswith("none of the 2 images of domain B (in ") and "can be decoded" in said["message"]
    assert said["type"] == "TrainingError" and said["exit_code"] == 1
    assert "Traceback" not in result.stderr and "Caught" not in result.stderr


def _tiny_run(tmp_path: Path, out: Path, *extra: str, a: str = "a", b: str = "b") -> object:
    return CliRunner().invoke(app, ["--domain-a", str(tmp_path / a), "--domain-b", str(tmp_path / b),
                                    "--out", str(out), *TINY, "--log-every", "1", *extra])


def test_a_new_run_never_replaces_an_earlier_runs_model_and_starts_its_log_afresh(tmp_path: Path) -> None:
    """Its checkpoints deleted to save space, a run folder was taken for a new run, whose export
    replaced the trained model without a word; and a run started again after dying before its first
    checkpoint appended to the earlier log and kept its sample grids."""
    write_images(tmp_path / "a", 2, seed=0)
    write_images(tmp_path / "b", 2, seed=1)
    run = tmp_path / "run"
    assert _tiny_run(tmp_path, run, "--max-steps", "2").exit_code == 0
    model = (run / "model" / "a2b.onnx").read_bytes()
    shutil.rmtree(run / "checkpoints")
    result = _tiny_run(tmp_path, run, "--max-steps", "1")
    assert result.exit_code == 2 and "holds the model of an earlier run" in result.output, result.output
    assert "imgxlate models add" in result.output and (run / "model" / "a2b.onnx").read_bytes() == model
    # a run that died before its first checkpoint (no model, no checkpoint): the same command again
    # starts afresh, its log and samples its own
    shutil.rmtree(run / "model")
    (run / "samples").mkdir(exist_ok=True)
    (run / "samples" / "step_000007.png").write_bytes(b"an earlier run's grid")
    assert _tiny_run(tmp_path, run, "--max-steps", "2", "--no-export").exit_code == 0
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert not (run / "samples" / "step_000007.png").exists()


def test_domains_inside_each_other_or_swapped_on_resume_are_refused(tmp_path: Path) -> None:
    """Folders are searched recursively: --domain-a data --domain-b data/zebras put the zebras in both
    domains. A resume with the folders swapped only warned that the images differed."""
    write_images(tmp_path / "data" / "zebras", 2, seed=0)
    write_images(tmp_path / "data" / "horses", 3, seed=1)  # the fingerprints compare names: other counts
    for a, b in (("data", "data/zebras"), ("data/zebras", "data")):
        result = _tiny_run(tmp_path, tmp_path / "r0", "--max-steps", "1", a=a, b=b)
        assert result.exit_code == 2 and "so its images would be in both domains" in result.output, result.output
    run = tmp_path / "r"
    assert _tiny_run(tmp_path, run, "--max-steps", "1", "--no-export", a="data/horses", b="data/zebras").exit_code == 0
    result = CliRunner().invoke(app, ["--resume", str(run), "--max-steps", "2", "--domain-a",
                                      str(tmp_path / "data" / "zebras"), "--domain-b", str(tmp_path / "data" / "horses")])
    assert result.exit_code == 2 and "the folders are swapped" in result.output, result.output
    result = CliRunner().invoke(app, ["--resume", str(run), "--max-steps", "2", "--domain-a",
                                      str(tmp_path / "data" / "zebras")])
    assert result.exit_code == 2 and "are the same folder" in result.output, result.output
    assert load_checkpoint(run)["step"] == 1


def test_a_stop_before_the_first_checkpoint_says_to_run_the_same_command_again(tmp_path: Path) -> None:
    from imgxlate.train.checkpoint import how_to_go_on

    assert how_to_go_on(tmp_path).startswith("run the same command again (no checkpoint was saved yet")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    assert how_to_go_on(tmp_path) == f"imgxlate-train --resume {tmp_path}"
    os.environ["WORLD_SIZE"] = "4"
    try:
        assert how_to_go_on(tmp_path) == f"torchrun --nproc-per-node 4 -m imgxlate.train --resume {tmp_path}"
        os.environ["LOCAL_WORLD_SIZE"] = "2"  # two nodes of two processes
        assert how_to_go_on(tmp_path).startswith("torchrun --nnodes 2 ... --nproc-per-node 2 -m imgxlate.train")
    finally:
        del os.environ["WORLD_SIZE"]
        os.environ.pop("LOCAL_WORLD_SIZE", None)


@pytest.mark.parametrize("width", [80, 120])
def test_the_bar_keeps_the_step_count_and_eta_on_a_narrow_terminal(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The losses took the line: at 80 columns neither the step count nor the bar was shown."""
    from types import SimpleNamespace

    from rich.console import Console

    import imgxlate.train.cli as train_cli

    screen = io.StringIO()
    monkeypatch.setattr(train_cli, "stderr", Console(file=screen, width=width, force_terminal=True, color_system=None))
    losses = {k: 0.5 for k in ("G_ab", "G_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "D_a", "D_b")}
    with train_cli._Progress(quiet=False, live=True) as bar:
        bar(SimpleNamespace(total=2324, start=447, step=520, epoch=2.06, images_per_s=0.13, losses=losses,
                            logged=False))
    import re

    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # cursor and line controls
    last = [line for line in re.split(r"[\r\n]", shown) if line.strip()][-1]
    assert last.startswith("train  520/2324 ━") and "-:--:--" in last and "ep 2.06" in last, last
    assert len(last) <= width and last.endswith("…")


def test_a_load_size_below_the_crop_is_said_and_recorded_as_used() -> None:
    """--image-size 128 --load-size 64 trained at 128 without a word, and the checkpoint and the model
    said 64."""
    from imgxlate.train.config import TrainConfig

    cfg = TrainConfig(image_size=128, load_size=64)
    with pytest.warns(UserWarning, match="--load-size 64 is smaller than --image-size 128: images are resized to 128"):
        cfg.validate(folders=False)
    assert cfg.load_size == 128
    import warnings

    with warnings.catch_warnings():  # not given: the reference's ratio (286 for 256) for any crop size
        warnings.simplefilter("error")
        for crop, load in ((256, 286), (288, 322), (512, 572)):
            cfg = TrainConfig(image_size=crop)
            cfg.validate(folders=False)
            assert cfg.load_size == load


def test_resuming_a_run_at_work_that_has_not_saved_yet_says_so(tmp_path: Path) -> None:
    """It said "has no checkpoints/last.pt; pass a checkpoint file or a run folder"."""
    from imgxlate._lock import exclusive
    from imgxlate.train.loop import RUN_LOCK

    run = tmp_path / "run"
    run.mkdir()
    with exclusive(run / RUN_LOCK, lambda: AssertionError("not held")):
        result = CliRunner().invoke(app, ["--resume", str(run)])
    assert result.exit_code == 2 and "another imgxlate-train is using" in result.output, result.output
    result = CliRunner().invoke(app, ["--resume", str(run)])  # nobody at work: the plain message
    assert result.exit_code == 2 and "has no checkpoints/last.pt" in result.output, result.output
