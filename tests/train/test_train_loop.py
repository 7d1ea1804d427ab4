import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import tiny_config

from imgxlate.errors import UsageError
from imgxlate.train.cyclegan import CycleGANTrainer as Trainer
from imgxlate.train.loop import Runtime, load_checkpoint, train


def test_steps_on_a_fixed_batch_reduce_the_cycle_loss(folders: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = tiny_config(*folders, tmp_path / "run", lr=1e-3)
    trainer = Trainer(cfg, Runtime(torch.device("cpu"), None, "fp32"), steps_per_epoch=100)
    g = torch.Generator().manual_seed(0)

    # smooth images (4x4 noise upsampled): reconstructable, unlike white noise
    def smooth() -> torch.Tensor:
        low = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
        return torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)

    a, b = smooth(), smooth()
    before = {k: v.clone() for k, v in trainer.g_ab.state_dict().items()}
    cycles = []
    for _ in range(12):
        losses = trainer.step(a, b)
        cycles.append(float(losses["cycle_a"] + losses["cycle_b"]))
        assert all(np.isfinite(float(v)) for v in losses.values())
    assert np.mean(cycles[-3:]) < 0.85 * np.mean(cycles[:3])
    assert any(not torch.equal(before[k], v) for k, v in trainer.g_ab.state_dict().items())


def test_identity_off_skips_identity_compute(folders: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = tiny_config(*folders, tmp_path / "run", lambda_identity=0.0, batch_size=2)
    trainer = Trainer(cfg, Runtime(torch.device("cpu"), None, "fp32"), steps_per_epoch=10)
    calls = []
    trainer.g_ab.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    losses = trainer.step(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32))
    assert losses["idt_a"].item() == 0.0 and losses["idt_b"].item() == 0.0
    assert calls == [2, 2]  # G_ab(a) and G_ab(fake_a): no identity batch


def _params(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return load_checkpoint(run)["models"]


def test_resume_is_exact(folders: tuple[Path, Path], tmp_path: Path) -> None:
    kw = {"max_steps": 6, "batch_size": 2, "checkpoint_every": 0, "epochs": 2, "epochs_decay": 2}
    straight = train(tiny_config(*folders, tmp_path / "straight", **kw))
    assert straight.steps == 6
    half = train(tiny_config(*folders, tmp_path / "split", **kw), stop_after=3)
    assert half.steps == 3 and load_checkpoint(tmp_path / "split")["step"] == 3
    resumed = train(resume=tmp_path / "split")
    assert resumed.steps == 6
    p1, p2 = _params(tmp_path / "straight"), _params(tmp_path / "split")
    for net in p1:
        for name in p1[net]:
            assert torch.allclose(p1[net][name], p2[net][name], atol=1e-6, rtol=0), (net, name)
    # the log has one line per step, none duplicated by the resume
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))


def test_a_resume_between_two_log_lines_logs_what_the_uninterrupted_run_logs(folders: tuple[Path, Path],
                                                                            tmp_path: Path) -> None:
    """Stopped at step 3 with --log-every 4, the resumed run's line for step 4 averaged step 4 alone
    (the uninterrupted run: steps 1-4); the window's sums now travel in the checkpoint."""
    kw = {"max_steps": 6, "batch_size": 2, "checkpoint_every": 0, "epochs": 2, "epochs_decay": 2, "log_every": 4}

    def logged(run: Path) -> list[dict]:
        return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]

    train(tiny_config(*folders, tmp_path / "straight", **kw))
    train(tiny_config(*folders, tmp_path / "split", **kw), stop_after=3)
    train(resume=tmp_path / "split")
    straight, split = logged(tmp_path / "straight"), logged(tmp_path / "split")
    assert [r["step"] for r in straight] == [r["step"] for r in split] == [4, 6]
    for a, b in zip(straight, split):
        losses = [k for k in a if k.startswith(("G_", "D_", "cycle", "idt"))]
        assert losses and all(abs(a[k] - b[k]) < 1e-6 for k in losses), (a, b)


def test_a_stop_signal_inside_a_step_saves_a_whole_step(folders: tuple[Path, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C between the generators' and the discriminators' updates of step 3, under the CLI's
    guard (``defer_stop``): the step finishes, step 3 is saved with the weights of a run that stopped
    cleanly after 3 steps, and the stop is TrainingInterrupted (exit 130), not an error. Before, the
    half-applied step was saved as step 2 and the resumed run differed from an uninterrupted one."""
    from imgxlate.cli.common import defer_stop, stop_signals
    from imgxlate.errors import TrainingInterrupted

    kw = {"max_steps": 6, "batch_size": 2, "checkpoint_every": 0, "epochs": 2, "epochs_decay": 2}
    clean = tmp_path / "clean"
    train(tiny_config(*folders, clean, **kw), stop_after=3)
    calls = []
    update = Trainer._update_discriminators

    def interrupted(self: Trainer, *args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs at once, between bytecodes
        return update(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_update_discriminators", interrupted)
    cut = tmp_path / "cut"
    with stop_signals(), pytest.raises(TrainingInterrupted) as info:
        train(tiny_config(*folders, cut, **kw), step_guard=defer_stop)
    assert info.value.exit_code == 130 and f"--resume {cut}" in str(info.value)
    assert info.value.step == 3 and load_checkpoint(cut)["step"] == 3
    p1, p2 = _params(clean), _params(cut)
    for net in p1:
        for name in p1[net]:
            assert torch.equal(p1[net][name], p2[net][name]), (net, name)


def test_refuses_to_overwrite_a_run_and_rejects_math_overrides(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    train(tiny_config(*folders, tmp_path / "run", max_steps=1))
    with pytest.raises(UsageError, match="--resume"):  # exit 2: another --out, or --resume
        train(tiny_config(*folders, tmp_path / "run", max_steps=1))
    with pytest.raises(Exception, match="cannot change when resuming"):
        train(resume=tmp_path / "run", overrides={"lr": 1.0})
    with pytest.raises(UsageError, match="no checkpoints"):
        train(resume=tmp_path)


def test_sigkill_leaves_a_loadable_checkpoint(folders: tuple[Path, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from train_helpers import tiny_config; from imgxlate.train.loop import train;"
        "from pathlib import Path;"
        "train(tiny_config(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]),"
        " max_steps=100000, epochs=100000, checkpoint_every=1, log_every=1))"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(Path(__file__).parent), *map(str, folders), str(run)],
        env=env,
        stderr=subprocess.PIPE,
    )
    ckpt = run / "checkpoints" / "last.pt"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if ckpt.exists() and len((run / "log.jsonl").read_text().splitlines()) >= 4:
                break
            if proc.poll() is not None:
                pytest.fail(f"trainer exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint within 120 s")
        time.sleep(0.3)  # land the kill at a random point, likely inside a save
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = load_checkpoint(run)
    assert state["step"] >= 3
    result = train(resume=run, overrides={"max_steps": state["step"] + 2})
    assert result.steps == state["step"] + 2
    assert not list((run / "checkpoints").glob(".imgxlate-tmp-*"))


def test_init_from_starts_from_the_networks_with_a_fresh_schedule(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    train(tiny_config(*folders, tmp_path / "base", max_steps=3, epochs=0, epochs_decay=1))
    base = load_checkpoint(tmp_path / "base")
    # max_steps 0 with no epochs to run trains nothing: the fine-tuned run's first checkpoint is its start
    tuned = train(
        tiny_config(*folders, tmp_path / "tuned", init_from=str(tmp_path / "base"), max_steps=2, lr=1e-3),
        stop_after=0,
    )
    assert tuned.steps == 0
    start = load_checkpoint(tmp_path / "tuned")
    for net in base["models"]:
        for name, value in base["models"][net].items():
            assert torch.equal(start["models"][net][name], value), (net, name)
    # its own schedule and optimisers: step 0, the new learning rate, no Adam moments carried over
    assert start["step"] == 0
    assert start["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    assert start["optimizers"]["G"]["state"] == {}
    assert start["config"]["init_from"] == str(tmp_path / "base")
    # where the weights came from goes into the facts (and so the model card), also after a resume
    origin = start["facts"]["fine_tuned_from"]
    assert origin["steps"] == 3 and origin["checkpoint"].endswith("last.pt")
    assert origin["command"] == base["facts"]["command"]
    train(resume=tmp_path / "tuned", stop_after=1)
    assert load_checkpoint(tmp_path / "tuned")["facts"]["fine_tuned_from"] == origin

    # different networks: a usage error naming the setting, before anything is written
    with pytest.raises(Exception, match="ngf 8 there, 12 here") as err:
        train(tiny_config(*folders, tmp_path / "wide", init_from=str(tmp_path / "base"), ngf=12))
    assert type(err.value).__name__ == "UsageError"
    assert not (tmp_path / "wide").exists()


def test_init_from_an_exported_pair_takes_its_generators(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """--init-from a folder with a2b.onnx / b2a.onnx (an export, e.g. the bundled model): the generators
    are the ONNX files' weights exactly, the discriminators start fresh, and the card says so. What a
    GPU session can bring back within its size limits is such a pair, not a checkpoint."""
    train(tiny_config(*folders, tmp_path / "base", max_steps=3, epochs=0, epochs_decay=1, export=True))
    base = load_checkpoint(tmp_path / "base")
    model = tmp_path / "base" / "model"
    assert (model / "a2b.onnx").is_file()
    tuned = train(tiny_config(*folders, tmp_path / "tuned", init_from=str(model), max_steps=2), stop_after=0)
    assert tuned.steps == 0
    start = load_checkpoint(tmp_path / "tuned")
    for net in ("G_ab", "G_ba"):
        for name, value in base["models"][net].items():
            assert torch.equal(start["models"][net][name], value), (net, name)
    fresh = train(tiny_config(*folders, tmp_path / "fresh", max_steps=2), stop_after=0)
    assert fresh.steps == 0
    for name, value in load_checkpoint(tmp_path / "fresh")["models"]["D_a"].items():  # same seed: the fresh D
        assert torch.equal(start["models"]["D_a"][name], value), name
    origin = start["facts"]["fine_tuned_from"]
    assert origin["model"] == str(model) and origin["steps"] == 3 and origin["discriminators"] == "fresh"
    assert origin["command"] == base["facts"]["command"]
    # the exported pair of a fine-tune says where it came from (metadata and card), and a fine-tune of
    # that pair keeps the whole chain
    train(resume=tmp_path / "tuned", overrides={"export": True})
    from imgxlate.metadata import read_onnx_metadata

    meta = read_onnx_metadata(str(tmp_path / "tuned" / "model" / "a2b.onnx"))
    assert meta is not None and meta.training["fine_tuned_from"] == origin
    assert '"fine_tuned_from"' in (tmp_path / "tuned" / "model" / "README.md").read_text()
    again = train(tiny_config(*folders, tmp_path / "again", init_from=str(tmp_path / "tuned" / "model"), max_steps=1),
                  stop_after=0)
    chain = load_checkpoint(again.out)["facts"]["fine_tuned_from"]
    assert chain["model"] == str(tmp_path / "tuned" / "model") and chain["fine_tuned_from"] == origin
    with pytest.raises(Exception, match="n_blocks 2 there, 3 here") as err:
        train(tiny_config(*folders, tmp_path / "deep", init_from=str(model), n_blocks=3))
    assert type(err.value).__name__ == "UsageError"


def test_the_bundled_pair_reads_back_into_generators_that_match_onnx_runtime() -> None:
    """The shipped model can seed a longer run (--init-from imgxlate/models/vangogh2photo): its ONNX
    weights rebuild PyTorch generators that compute what ONNX Runtime computes from the files."""
    import onnxruntime as ort

    from imgxlate.train.checkpoint import generators_from_onnx
    from imgxlate.train.networks import build_generator

    folder = Path(__file__).resolve().parents[2] / "imgxlate" / "models" / "vangogh2photo"
    models, config, meta = generators_from_onnx(folder)
    assert config == {k: meta.architecture[k] for k in ("ngf", "n_blocks", "upsample", "down_padding")}
    x = torch.rand(1, 3, 64, 72) * 2 - 1
    for key, direction in (("G_ab", "a2b"), ("G_ba", "b2a")):
        gen = build_generator(config).eval()
        gen.load_state_dict(models[key])
        with torch.no_grad():
            ours = gen(x).numpy()
        sess = ort.InferenceSession(str(folder / f"{direction}.onnx"), providers=["CPUExecutionProvider"])
        theirs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert float(abs(ours - theirs).max()) < 1e-4, direction


def test_discriminator_warmup_moves_only_the_discriminators_then_the_schedule_starts(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """--d-warmup-steps: the first steps train D alone (G bit-identical, G's Adam untouched), log only
    the adversarial losses, and the learning-rate schedule starts after them; resuming inside the
    warm-up continues it exactly."""
    kw = {"d_warmup_steps": 3, "batch_size": 2, "epochs": 0, "epochs_decay": 1, "max_steps": 0, "lr": 1e-3}
    base = train(tiny_config(*folders, tmp_path / "base", max_steps=1, epochs=0, epochs_decay=1))
    start = load_checkpoint(base.out)["models"]
    infos: list = []
    warm = train(tiny_config(*folders, tmp_path / "warm", init_from=str(base.out), **kw), stop_after=3,
                 on_step=infos.append)
    assert warm.steps == 3
    assert [i.eta_s for i in infos] == [None] * 3  # no ETA from the speed of warm-up steps
    ck = load_checkpoint(warm.out)
    for net in ("G_ab", "G_ba"):
        for name, value in start[net].items():
            assert torch.equal(ck["models"][net][name], value), (net, name)
    assert any(not torch.equal(ck["models"]["D_a"][k], v) for k, v in start["D_a"].items())
    assert ck["optimizers"]["G"]["state"] == {}  # Adam of the generators never stepped
    lines = [json.loads(x) for x in (warm.out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert all("cycle_a" not in x and {"D_a", "D_b", "G_ab", "G_ba"} <= x.keys() for x in lines)
    assert all(x["lr"] == pytest.approx(1e-3) for x in lines)  # the schedule waits for the warm-up

    # 3 warm-up steps + one epoch of decay (4 steps: 4 images in A, batch 2, 2 in B -> max = 2 steps/epoch)
    done = train(resume=warm.out, on_step=infos.append)
    assert all(i.eta_s is not None for i in infos[3:])
    lines = [json.loads(x) for x in (warm.out / "log.jsonl").read_text().splitlines()]
    assert done.steps == 3 + 2 and [x["step"] for x in lines] == [1, 2, 3, 4, 5]
    assert "cycle_a" in lines[3] and lines[3]["lr"] == pytest.approx(1e-3 * 0.5)  # decay counted from step 4
    straight = train(tiny_config(*folders, tmp_path / "straight", init_from=str(base.out), export=True, **kw))
    p1, p2 = _params(straight.out), _params(warm.out)
    for net in p1:
        for name in p1[net]:
            assert torch.allclose(p1[net][name], p2[net][name], atol=1e-6, rtol=0), (net, name)
    assert load_checkpoint(straight.out)["facts"]["d_warmup_steps"] == 3
    card = (straight.out / "model" / "README.md").read_text()  # the card does not count them as training
    assert "Trained for 5 steps (2.50 epochs), of which the first 3 trained only the discriminators (2 generator steps)." in card
    with pytest.raises(Exception, match="--d-warmup-steps is for --method cyclegan") as err:
        train(tiny_config(*folders, tmp_path / "cut", method="cut", d_warmup_steps=2))
    assert type(err.value).__name__ == "UsageError"
