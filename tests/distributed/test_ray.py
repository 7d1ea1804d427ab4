"""Batch conversion on Ray: a real local Ray instance (2 CPUs), driven from outside through the CLI and
through the Python API with object-store style URLs (``file://``, served by pyarrow's filesystem layer
as ``s3://`` would be). Checked against the single-process run: the same files, byte for byte, and the
same summary counts; a rerun skips everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

BIN = Path(sys.executable).parent


def _tree(root: Path) -> Path:
    """A small input tree: JPEG, PNG with alpha, a 16-bit PNG and an animated GIF in a sub-folder, and one
    broken file."""
    rng = np.random.default_rng(0)
    src = root / "in"
    (src / "sub dir").mkdir(parents=True)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((64, 48), Image.Resampling.BICUBIC).save(src / "a.jpg", quality=90)
    rgba = np.dstack([np.asarray(Image.fromarray(small).resize((40, 36))), np.full((36, 40), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(src / "b.png")
    deep = (rng.integers(0, 65535, (30, 44), dtype=np.uint16))
    Image.fromarray(deep).save(src / "sub dir" / "c16.png")
    (src / "sub dir" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    frames = [Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(src / "sub dir" / "clip.gif", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return src


def _convert(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RAY_DISABLE_USAGE_STATS="1")
    return subprocess.run([str(BIN / "imgxlate"), "convert", *args, "--to", "vangogh", "--json"],
                          check=False, capture_output=True, text=True, timeout=timeout, env=env)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """The input tree and the single-process run's outputs and summary."""
    root = tmp_path_factory.mktemp("ray")
    src = _tree(root)
    pages = [Image.fromarray(np.full((20, 28, 3), 40 * i, np.uint8)) for i in range(2)]
    pages[0].save(src / "scan.tif", save_all=True, append_images=pages[1:])  # every page converted
    # 16-bit colour pages: the first page only, with a "partial" note
    assert cv2.imwritemulti(str(src / "deep.tif"), [np.full((12, 10, 3), 30000 * i, np.uint16) for i in (1, 2)])
    r = _convert(str(src), "--out", str(root / "local"))
    assert r.returncode == 1, r.stderr  # the broken file
    return src, root / "local", json.loads(r.stdout)


def test_cli_ray_run_matches_the_local_run_and_resumes(reference: tuple[Path, Path, dict], tmp_path: Path) -> None:
    src, local, local_summary = reference
    out = tmp_path / "ray"
    r = _convert(str(src), "--out", str(out), "--ray")
    assert r.returncode == 1, r.stderr
    summary = json.loads(r.stdout)
    for key in ("converted", "skipped", "failed"):
        assert summary["totals"][key] == local_summary["totals"][key], key
    assert summary["totals"]["converted"] == 6 and summary["totals"]["failed"] == 1
    failed = [x for x in summary["results"] if x["status"] == "failed"]
    assert failed[0]["src"].endswith("broken.jpg") and failed[0]["reason"]
    # the multi-page TIFF's "partial" note, as the local run gives it
    notes = {Path(x["src"]).name: x["notes"] for x in summary["results"] if x["notes"]}
    assert notes == {Path(x["src"]).name: x["notes"] for x in local_summary["results"] if x["notes"]}
    assert list(notes) == ["deep.tif"] and [n["kind"] for n in notes["deep.tif"]] == ["partial"]
    assert Image.open(out / "scan.tif").n_frames == 2
    assert _files(out) == _files(local)  # the same files, byte for byte
    assert summary["ray"]["actors"] >= 1 and summary["ray"]["cpus"] >= 1
    assert summary["model"] == local_summary["model"] and summary["model"].endswith("b2a.onnx")
    assert not list(out.rglob(".imgxlate-tmp-*"))

    again = _convert(str(src), "--out", str(out), "--ray")
    assert again.returncode == 1, again.stderr  # the broken file is still reported
    totals = json.loads(again.stdout)["totals"]
    assert totals["skipped"] == 6 and totals["converted"] == 0 and totals["failed"] == 1


def test_api_with_urls_matches_the_local_run(reference: tuple[Path, Path, dict], tmp_path: Path) -> None:
    import imgxlate.distributed as dist
    from imgxlate.options import ModelSpec

    src, local, _ = reference
    out_url = (tmp_path / "remote out").as_uri()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = dist.RunReport()
        spec = ModelSpec(to="vangogh")
        results = list(dist.convert([src.as_uri()], out_url, spec=spec, quiet=True, report=report))
        again = list(dist.convert([src.as_uri()], out_url, spec=spec, quiet=True))
    finally:
        ray.shutdown()
    statuses = sorted(r.status for r in results)
    assert statuses == ["converted"] * 6 + ["failed"]
    assert {Path(r.src).name: [n.kind for n in r.notes] for r in results if r.notes} == {"deep.tif": ["partial"]}
    assert report.providers == {"CPUExecutionProvider"} and report.cluster is not None
    assert not report.cluster.started  # an initialised Ray is used, not stopped
    assert _files(tmp_path / "remote out") == _files(local)
    assert sorted(r.status for r in again) == ["failed"] + ["skipped"] * 6


def test_url_plan_mirrors_names_and_filters(tmp_path: Path) -> None:
    from imgxlate.distributed import plan_jobs

    src = _tree(tmp_path)
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden.jpg").write_bytes((src / "a.jpg").read_bytes())
    out = (tmp_path / "out").as_uri()
    jobs = plan_jobs([src.as_uri()], out, fmt="png", exclude=["**/broken.jpg"])
    assert [j.dst.removeprefix(out) for j in jobs] == ["/a.png", "/b.png", "/sub%20dir/c16.png", "/sub%20dir/clip.png"]
    jobs = plan_jobs([src.as_uri()], out, exclude=["**/broken.jpg"])  # --format same: an animated GIF stays one
    assert jobs[-1].dst.removeprefix(out) == "/sub%20dir/clip.gif"
    jobs = plan_jobs([src.as_uri()], out, fmt="png", exclude=["**/broken.jpg"])
    assert all(j.status == "pending" for j in jobs)
    # an existing output is skipped, as in the local run
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"x")
    jobs = plan_jobs([src.as_uri()], out, fmt="png", exclude=["**/broken.jpg"])
    assert [j.status for j in jobs] == ["skipped", "pending", "pending", "pending"]


def test_local_and_url_inputs_cannot_be_mixed(tmp_path: Path) -> None:
    from imgxlate.distributed import plan_jobs
    from imgxlate.errors import UsageError

    src = _tree(tmp_path)
    with pytest.raises(UsageError, match="not both"):
        plan_jobs([str(src), src.as_uri()], tmp_path / "out")


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import imgxlate.distributed as dist
    from imgxlate.errors import UsageError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'ray\[data\]>=2\.40'"):
        dist._ray()


@pytest.mark.parametrize(("address", "endpoint"), [
    ("auto", None), ("h", ("h", 6379)), ("h:6380", ("h", 6380)), ("ray://h", ("h", 10001)),
    ("ray://h:123", ("h", 123)), ("[::1]:6379", ("::1", 6379)), ("h:abc", None),
])
def test_cluster_addresses_are_read_as_ray_reads_them(address: str, endpoint: tuple[str, int] | None) -> None:
    from imgxlate.distributed import endpoint as read

    assert read(address) == endpoint


def test_an_address_nothing_answers_at_is_a_usage_error_at_once(tmp_path: Path) -> None:
    """Ray retries such an address without end (a reviewer's run still waited after 500 s)."""
    import socket
    import time

    src = _tree(tmp_path)
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        t0 = time.monotonic()
        r = _convert(str(src), "--out", str(tmp_path / "out"), "--ray-address", f"127.0.0.1:{port}")
    assert r.returncode == 2 and time.monotonic() - t0 < 60
    err = json.loads(r.stdout)["error"]
    assert err["type"] == "UsageError" and f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in err["message"]
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_an_address_where_a_web_server_answers_is_a_usage_error_at_once(tmp_path: Path) -> None:
    """A port that answers but is not Ray's (a dashboard's or a notebook's web port) made ray.init wait
    without end (a reviewer's run: still waiting after 2 minutes, printing a warning every 5 s)."""
    import http.server
    import threading
    import time

    src = _tree(tmp_path)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t0 = time.monotonic()
        r = _convert(str(src), "--out", str(tmp_path / "out"), "--ray-address", f"127.0.0.1:{server.server_port}",
                     timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 2 and time.monotonic() - t0 < 60
    err = json.loads(r.stdout)["error"]
    assert err["type"] == "UsageError" and "answers, but not as a Ray cluster" in err["message"], err
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_the_protocol_check_accepts_a_real_cluster_and_refuses_a_silent_port() -> None:
    """The check speaks HTTP/2's preface: a real Ray GCS (this test starts one) answers it, a listener
    that never answers is refused after the timeout rather than left to Ray's endless retries."""
    import socket
    import time

    import imgxlate.distributed as dist
    from imgxlate.errors import UsageError

    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False)
    try:
        dist.check_reachable(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        t0 = time.monotonic()
        with pytest.raises(UsageError, match=r"not as a Ray cluster \(it said nothing in 0.5 s\)"):
            dist.check_reachable(f"127.0.0.1:{s.getsockname()[1]}", timeout=0.5)
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(("signame", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_counts_every_finished_file_and_leaves_no_ray_process(tmp_path: Path, signame: str, code: int) -> None:
    """SIGTERM too (a scheduler's time limit): Ray's core worker installs its own handler in the driver,
    which dumped a stack and ended the command with 15 or an abort, no summary."""
    import signal
    import time

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(80):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(src / f"p{i:02d}.png")
    out = tmp_path / "out"
    env = dict(os.environ, RAY_DISABLE_USAGE_STATS="1")
    proc = subprocess.Popen([str(BIN / "imgxlate"), "convert", str(src), "--out", str(out), "--to", "vangogh",
                             "--ray", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(list(out.rglob("*.png"))) < 2:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(getattr(signal, signame))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    totals = json.loads(stdout)["totals"]
    written = [p for p in out.rglob("*") if p.is_file()]
    assert totals["interrupted"] and totals["converted"] == len(written) > 0
    assert not [p for p in written if p.name.startswith(".imgxlate-tmp")]
    # ray.shutdown() signals the processes it started; give them a few seconds to finish exiting
    deadline = time.monotonic() + 15
    while True:
        leftovers = subprocess.run(["pgrep", "-f", "raylet"], check=False, capture_output=True, text=True).stdout
        if not leftovers.strip() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert leftovers.strip() == "", f"Ray processes outlived the command: {leftovers}"


def test_a_write_cut_by_the_shutdown_leaves_no_temp_file_and_no_process(tmp_path: Path) -> None:
    """A write task still inside its atomic write when the command stops (what a Ctrl-C meets now and
    then): when the cluster block ends its worker is gone, and when the run's folders are cleared, so
    is its temp file; a finished output beside it is kept."""
    import signal
    import time

    import imgxlate.distributed as dist
    from imgxlate._atomic import atomic_path, is_temp_name

    out = tmp_path / "out"
    out.mkdir()
    (out / "done.png").write_bytes(b"finished")
    marker = tmp_path / "pid"

    def cut_write(folder: str, marker: str) -> None:
        # a writer that cannot clean up: it ignores SIGTERM (as one stuck in a slow fsync would seem to),
        # so the shutdown must end it with SIGKILL and its temp file stays behind
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with atomic_path(Path(folder) / "x.png") as tmp:
            tmp.write_bytes(b"half")
            Path(marker).write_text(str(os.getpid()))
            time.sleep(300)

    with dist.temps_cleared([out]), dist.cluster(quiet=True) as info:
        assert info.started
        ref = ray.remote(cut_write).remote(str(out), str(marker))
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in out.iterdir() if is_temp_name(p.name)], "the write never started"
        del ref
    pid = int(marker.read_text())
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX", "the worker outlived the run"
    assert sorted(p.name for p in out.iterdir()) == ["done.png"]


def test_full_disk_stops_a_ray_run_as_it_stops_a_local_one(tmp_path: Path) -> None:
    """Outputs onto a real full disk (a small tmpfs with room for about two of twelve): the run stops
    instead of failing the remaining files one by one, every file on disk is complete and counted,
    the rest is reported as not started, exit 1 with "disk full"."""
    from fault_fs import fill, small_tmpfs

    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(12):
        small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((256, 256), Image.Resampling.BICUBIC).save(src / f"p{i:02d}.png")
    ref = tmp_path / "ref"
    r = _convert(str(src), "--out", str(ref))
    assert r.returncode == 0, r.stderr
    size = max(p.stat().st_size for p in ref.iterdir())
    with small_tmpfs(tmp_path / "small", 4096) as small:
        out = small / "out"
        out.mkdir()
        fill(small, 2 * size + size // 2 + 8192)
        r = _convert(str(src), "--out", str(out), "--ray")
        assert r.returncode == 1, r.stderr
        assert "disk full" in r.stderr and "Traceback" not in r.stderr
        summary = json.loads(r.stdout)
        totals = summary["totals"]
        assert "disk full" in totals["stopped"]
        on_disk = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        converted = sorted(Path(x["dst"]).name for x in summary["results"] if x["status"] == "converted")
        assert converted == on_disk and 1 <= len(on_disk) <= 3
        for name in on_disk:
            assert (out / name).read_bytes() == (ref / name).read_bytes()
        failed = [x for x in summary["results"] if x["status"] == "failed"]
        assert failed and all("disk full" in x["reason"] for x in failed)
        assert totals["converted"] + totals["failed"] + totals["not_started"] == 12
        assert totals["not_started"] >= 1  # stopped: not every file was tried


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 16])
@pytest.mark.parametrize("threads", [0, 1, 2])
@pytest.mark.parametrize("actors", [None, 8])
def test_actors_always_leave_room_for_a_decode_and_a_write_task(cpus: int, threads: int, actors: int | None) -> None:
    """--ray --threads 1 on 2 CPUs planned two actors of 1 CPU each: the decode tasks never got a CPU and
    the run hung without end."""
    from imgxlate.distributed import IO_CPUS, ClusterInfo, _actor_plan

    info = ClusterInfo("local", cpus, 0, True)
    count, resources, per_actor = _actor_plan(info, "cpu", threads, actors)
    assert count >= 1 and per_actor >= 1
    if actors:
        assert count == actors
    left = cpus - count * resources["num_cpus"]
    assert left >= (2 * IO_CPUS if cpus >= 2 else IO_CPUS) - 1e-6, (count, resources)
    if not actors:  # one actor per --threads CPUs (4 by default), as many as before the fix
        assert count == max(1, cpus // (threads or min(4, cpus)))
    gpu_count, gpu_resources, _ = _actor_plan(ClusterInfo("local", cpus, 2, True), "auto", threads, actors)
    assert cpus - gpu_count * gpu_resources["num_cpus"] >= min(2 * IO_CPUS, cpus / 2) - 1e-6


def test_a_ray_run_with_one_thread_per_actor_finishes(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    r = _convert(str(src), "--out", str(tmp_path / "out"), "--ray", "--threads", "1")
    assert r.returncode == 1, r.stderr  # the broken file
    assert json.loads(r.stdout)["totals"]["converted"] == 4


def test_a_url_out_stays_a_url_and_a_url_needs_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--out s3://bucket/out was read as a Path: "s3:/bucket/out", a local folder, and the run said it
    converted into it (exit 0). A URL now stays a URL (Ray's planner, --dry-run too); without --ray a URL
    input or output is refused saying so (an input was said not to exist)."""
    src = _tree(tmp_path)
    (src / "sub dir" / "broken.jpg").unlink()
    out_url = (tmp_path / "out").as_uri()
    monkeypatch.chdir(tmp_path)
    for args in ([str(src), "--out", out_url], [src.as_uri(), "--out", str(tmp_path / "o")]):
        r = _convert(*args)
        assert r.returncode == 2 and "is a URL" in r.stderr and "add --ray" in r.stderr, r.stderr
    r = _convert(src.as_uri(), "--out", out_url, "--ray", "--dry-run")
    assert r.returncode == 0, r.stderr
    dsts = sorted(row["dst"] for row in json.loads(r.stdout))
    assert dsts and all(d.startswith(out_url + "/") for d in dsts), dsts
    r = _convert(str(src), "--out", out_url, "--ray", "--dry-run")  # local inputs, a URL --out
    assert r.returncode == 2 and "the inputs are local paths" in r.stderr, r.stderr
    assert not (tmp_path / "file:").exists() and not (tmp_path / "out").exists()


def test_a_ray_plan_holds_absolute_paths_and_what_the_walk_left_out(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A joined cluster's workers run in the folder `ray start` ran in: relative paths read that folder's
    files and wrote there. The plan's paths are absolute; its videos reach the summary as locally."""
    from imgxlate.distributed import plan_jobs

    _tree(tmp_path)
    (tmp_path / "in" / "clip.mp4").write_bytes(b"\0" * 16)
    monkeypatch.chdir(tmp_path)
    jobs = plan_jobs(["in"], "out")
    assert jobs and all(os.path.isabs(j.src) and os.path.isabs(j.dst) for j in jobs if j.dst != ".")
    assert {Path(j.src).name for j in jobs} >= {"a.jpg", "b.png"}
    assert [f.path.name for f in jobs.ignored if f.video] == ["clip.mp4"]


def test_without_an_address_ray_starts_an_instance_of_the_commands_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """ray.init(address=None) joins a cluster already running on the machine (or RAY_ADDRESS's): the
    command then ran there, in another working folder. It asks for a new local instance."""
    import imgxlate.distributed as dist

    asked: list[object] = []

    class StopHere(Exception):
        pass

    def init(address: object = None, **kwargs: object) -> None:
        asked.append(address)
        raise StopHere

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    for address in (None, "local"):
        with pytest.raises(StopHere), dist.cluster(address):
            pass
    assert asked == ["local", "local"]
