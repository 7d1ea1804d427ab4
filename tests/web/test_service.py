"""The page's work without a browser or Gradio: shared sessions, temp folder, names, zip, reasons."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import web_inputs

from imgxlate.errors import ModelNotFoundError, UsageError
from imgxlate.web.service import WebService


@pytest.fixture()
def service(tiny_pair: Path, tmp_path: Path) -> WebService:
    svc = WebService(model=str(tiny_pair), threads=1)
    yield svc
    svc.close()


def _upload(svc: WebService, src: Path, folder: str) -> Path:
    """Put a file where Gradio would: a folder of its own inside the service's temp folder."""
    dst = svc.workdir / folder / src.name
    dst.parent.mkdir()
    dst.write_bytes(src.read_bytes())
    return dst


def test_one_shared_session_per_generator(service: WebService) -> None:
    label = service.default_choice.label
    assert service.default_choice.targets == ("zebra", "horse")
    first = service.translator(label, "zebra")
    assert service.translator(label, "zebra") is first
    other = service.translator(label, "horse")
    assert other is not first and other.metadata.target == "horse"
    with pytest.raises(UsageError, match="does not translate to 'cat'"):
        service.translator(label, "cat")


def test_same_names_do_not_overwrite_and_zip_holds_all(service: WebService, tmp_path: Path) -> None:
    a = _upload(service, web_inputs.jpeg(tmp_path / "photo.jpg", 32, 24), "u1")
    b = _upload(service, web_inputs.jpeg(tmp_path / "photo.jpg", 40, 24), "u2")
    steps: list[tuple[int, int, str]] = []
    outcome = service.convert_images([a, b], progress=lambda d, t, s: steps.append((d, t, s)))
    assert [o.status for o in outcome.images] == ["converted", "converted"]
    # the domain in the names: a zip unpacked beside the originals must not write over them
    assert [o.output.name for o in outcome.images] == ["photo.zebra.jpg", "photo (2).zebra.jpg"]
    assert [o.name for o in outcome.images] == ["photo.jpg", "photo (2).jpg"]
    assert [o.width for o in outcome.images] == [32, 40]
    assert steps[0][:2] == (0, 2) and steps[-1][:2] == (2, 2)
    assert outcome.zip_path is not None
    with zipfile.ZipFile(outcome.zip_path) as zf:
        assert sorted(zf.namelist()) == ["photo (2).zebra.jpg", "photo.zebra.jpg"]
    for o in outcome.images:
        assert o.output.resolve().is_relative_to(service.workdir)
        assert o.input_preview is not None and o.output_preview is not None


def test_only_its_own_uploads_are_read(service: WebService, tmp_path: Path) -> None:
    outside = web_inputs.jpeg(tmp_path / "outside.jpg")
    with pytest.raises(UsageError, match="not an upload of this page"):
        service.convert_images([outside])
    link = service.workdir / "sneaky.jpg"
    link.symlink_to(outside)
    with pytest.raises(UsageError, match="not an upload of this page"):
        service.convert_images([link])
    with pytest.raises(UsageError, match="no images uploaded"):
        service.convert_images([])


def test_close_removes_the_temp_folder(tiny_pair: Path) -> None:
    svc = WebService(model=str(tiny_pair))
    workdir = svc.workdir
    assert workdir.is_dir() and workdir.name.startswith("imgxlate-serve-")
    svc.close()
    assert not workdir.exists()


def test_unknown_target_is_refused_at_start(tiny_pair: Path) -> None:
    """The CLI's own message (resolve_model), before anything is served."""
    from imgxlate.registry import resolve_model

    with pytest.raises(ModelNotFoundError) as cli:
        resolve_model(str(tiny_pair), to="cat")
    with pytest.raises(ModelNotFoundError) as page:
        WebService(model=str(tiny_pair), to="cat")
    assert str(page.value) == str(cli.value)


def test_progress_inside_one_large_image_counts_its_tiles(service: WebService, tmp_path: Path) -> None:
    """A tiled image reports its tiles on the page's progress, not only 0 of 1 until it is done."""
    label = service.default_choice.label
    translator = service.translator(label, "zebra")
    translator.max_memory = 1  # a budget no whole-image run fits: exact tiles, whatever the machine
    big = _upload(service, web_inputs.jpeg(tmp_path / "big.jpg", 320, 240), "u1")
    steps: list[tuple[int, int, str]] = []
    outcome = service.convert_images([big], progress=lambda d, t, s: steps.append((d, t, s)))
    assert [o.status for o in outcome.images] == ["converted"]
    tile_steps = [s for s in steps if ": tile " in s[2]]
    assert len(tile_steps) >= 2, steps
    assert tile_steps[-1][2].startswith("translating big.jpg: tile ")
    done, count = (int(x) for x in tile_steps[-1][2].rsplit("tile ", 1)[1].split(" of "))
    assert done == count >= 2
    assert translator.tile_progress is None and translator.frame_progress is None  # left as it was found


def test_an_animated_upload_is_converted_whole_and_previewed_by_its_first_frame(
    service: WebService, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)) for _ in range(3)]
    src = tmp_path / "clip.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=[50, 70, 90], loop=0)
    steps: list[str] = []
    outcome = service.convert_images([_upload(service, src, "u1")], progress=lambda d, t, s: steps.append(s))
    assert "translating clip.gif: frame 3 of 3" in steps
    (o,) = outcome.images
    assert o.status == "converted" and o.output.name == "clip.zebra.gif"
    with Image.open(o.output) as im:
        assert im.n_frames == 3
    assert o.input_preview is not None and o.output_preview is not None
    with Image.open(o.output_preview) as im:
        assert im.size == (28, 20) and getattr(im, "n_frames", 1) == 1


def test_a_multi_page_upload_keeps_its_pages_or_says_what_was_left_out(service: WebService, tmp_path: Path) -> None:
    """As `imgxlate convert`: an 8-bit multi-page TIFF comes back with every page; one of 16-bit colour
    pages with its first page and the partial note, which the page shows beside the result."""
    import cv2
    import numpy as np
    from PIL import Image

    from imgxlate.web.app import batch_summary

    pages = [Image.fromarray(np.full((12, 16, 3), 70 * i, np.uint8)) for i in range(2)]
    pages[0].save(tmp_path / "scan.tif", save_all=True, append_images=pages[1:])
    assert cv2.imwritemulti(str(tmp_path / "deep.tif"), [np.full((10, 12, 3), 20000 * i, np.uint16) for i in (1, 2)])
    outcome = service.convert_images([_upload(service, tmp_path / "scan.tif", "u1"),
                                      _upload(service, tmp_path / "deep.tif", "u2")])
    scan, deep = outcome.images
    assert scan.status == deep.status == "converted" and scan.notes == ()
    with Image.open(scan.output) as im:
        assert im.n_frames == 2
    assert len(deep.notes) == 1 and "2 pages" in deep.notes[0]
    assert "2 pages" in batch_summary(outcome)


def test_a_stop_ends_the_request_in_flight_at_its_next_tile(tiny_pair: Path, tmp_path: Path) -> None:
    """close() while a request translates (a server's Ctrl-C, SIGTERM): the request stops at its next
    tile or image with ServiceStopped, close() waits for that before it unloads the sessions (a session
    freed under a running thread aborted the process: exit 134), then the temp folder goes."""
    import threading
    import time

    from imgxlate.web.service import ServiceStopped

    svc = WebService(model=str(tiny_pair), threads=1)
    translator = svc.translator()
    translator.max_memory = 1  # exact tiles: a check at every tile
    big = _upload(svc, web_inputs.jpeg(tmp_path / "big.jpg", 320, 240), "u1")
    reached, outcome = threading.Event(), {}

    def progress(done: float, total: int, what: str) -> None:
        if ": tile " in what and not reached.is_set():
            reached.set()
            while not svc._stopping.is_set():  # hold the request here until the stop comes
                time.sleep(0.01)

    def request() -> None:
        try:
            svc.convert_images([big, big], progress=progress)
        except Exception as exc:  # noqa: BLE001 - the outcome is the assertion
            outcome["error"] = exc

    worker = threading.Thread(target=request)
    worker.start()
    assert reached.wait(60)
    assert svc.close(wait=60) is True
    worker.join(60)
    assert isinstance(outcome.get("error"), ServiceStopped), outcome
    assert not svc.workdir.exists()
    with pytest.raises(ServiceStopped, match="not started"):  # nothing new starts once stopping
        svc.convert_images([big])


def test_progress_within_an_image_is_fractional_and_stems_stay_unique(service: WebService, tmp_path: Path) -> None:
    """A large image's bar moves with its tiles (it sat at 0% for minutes), and two uploads with one
    stem (IMG_0002.HEIC is written as IMG_0002.png) get two output names instead of one failing with a
    server path in its reason."""
    translator = service.translator(service.default_choice.label, "zebra")
    translator.max_memory = 1
    a = _upload(service, web_inputs.jpeg(tmp_path / "IMG_0002.jpg", 320, 240), "u1")
    b = _upload(service, web_inputs.jpeg(tmp_path / "img_0002.JPEG", 32, 24), "u2")
    steps: list[tuple[float, int, str]] = []
    outcome = service.convert_images([a, b], progress=lambda d, t, s: steps.append((d, t, s)))
    assert [o.status for o in outcome.images] == ["converted", "converted"]
    assert [o.name for o in outcome.images] == ["IMG_0002.jpg", "img_0002 (2).JPEG"]
    inside = [d for d, _, s in steps if ": tile " in s]
    assert any(0 < d < 1 for d in inside), steps
    # the staged copies of the uploads are gone once the request is done; the results stay
    job = outcome.images[0].output.parent.parent
    assert not (job / "in").exists() and (job / "out").is_dir()


def test_job_folders_older_than_their_lifetime_go_at_the_next_request(service: WebService, tmp_path: Path) -> None:
    import os
    import time

    from imgxlate.web import service as service_module

    old, recent = service.new_job(), service.new_job()
    (old / "result.png").write_bytes(b"x")
    past = time.time() - service_module.JOB_LIFETIME_S - 60
    os.utime(old, (past, past))
    service.new_job()
    assert not old.exists() and recent.exists()


def test_a_clip_is_said_to_be_cut_only_when_it_was(tiny_pair: Path, tmp_path: Path) -> None:
    """The note "only the first N s were converted" came for a clip whose every frame was converted
    when the clip was about as long as the limit; it now compares the clip's own length."""
    pytest.importorskip("av")
    svc = WebService(model=str(tiny_pair), threads=1, max_video_seconds=2.01)
    try:
        clip = _upload(svc, web_inputs.clip_with_sound(tmp_path / "two.mp4", seconds=2.0, fps=10), "u1")
        whole = svc.convert_video(clip)
        assert whole.frames == 20 and whole.limited_to is None
        svc.max_video_seconds = 1.0
        cut = svc.convert_video(clip)
        assert cut.limited_to == 1.0 and cut.frames == 10
        # a browser's recording says nothing of its length: cut when the frames reached the limit
        import subprocess

        live = tmp_path / "live.webm"
        subprocess.run([web_inputs._ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
                        "-t", "3", "-c:v", "libvpx", "-b:v", "200k", "-live", "1", "-f", "webm", str(live)], check=True)
        recorded = svc.convert_video(_upload(svc, live, "u2"))
        assert recorded.limited_to == 1.0 and recorded.frames == 10
    finally:
        svc.close()


def test_ipv6_hosts_are_refused_with_what_works() -> None:
    """--host ::1 crashed inside Gradio (it builds unbracketed URLs); it is a usage error now."""
    from imgxlate.web.app import check_host

    for host in ("::1", "::"):
        with pytest.raises(UsageError, match="cannot listen on IPv6 addresses; use 127.0.0.1"):
            check_host(host)


def test_uploads_while_a_batch_runs_are_not_dropped(service: WebService) -> None:
    """Gradio's default for an upload event ("once") ignored a drop while the previous batch ran: the
    files added meanwhile were never translated. The page's upload events run once more, last."""
    from imgxlate.web.app import build_app

    demo = build_app(service)
    uploads = [d for d in demo.config["dependencies"] if any(t[1] == "upload" for t in d["targets"])]
    assert len(uploads) == 2 and {d["trigger_mode"] for d in uploads} == {"always_last"}


def test_the_page_says_what_to_drop_and_what_comes_back(service: WebService) -> None:
    """A first visitor saw "vangogh2photo" and "vangogh" and no word of which pictures go in."""
    from imgxlate.web.app import build_app

    demo = build_app(service)
    hint = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "direction")
    assert hint.value == "Drop **horse** pictures: each comes back as **zebra**. *Translate to* picks the other way round."


def test_a_video_dropped_on_the_images_tab_is_sent_to_the_video_tab(service: WebService, tmp_path: Path) -> None:
    """Its reason was the CLI's, "convert videos with the video command", which a page user cannot run."""
    clip = _upload(service, web_inputs.clip_with_sound(tmp_path / "holiday.mp4", seconds=0.5), "u1")
    photo = _upload(service, web_inputs.jpeg(tmp_path / "photo.jpg", 32, 24), "u2")
    outcome = service.convert_images([clip, photo])
    assert [(o.name, o.status) for o in outcome.images] == [("holiday.mp4", "failed"), ("photo.jpg", "converted")]
    assert outcome.images[0].reason == "a video, not a picture: drop it on the Video tab"


def test_a_closed_page_cuts_its_request_short_and_only_its_own(tiny_pair: Path, tmp_path: Path) -> None:
    """A tab reloaded or closed during a 12 MP photo left the server translating it for a minute while
    the other tabs waited in the queue. The page's unload event now ends its request at the next tile;
    a request of another page goes on."""
    import threading
    import time

    from imgxlate.web.service import RequestCancelled

    svc = WebService(model=str(tiny_pair), threads=1)
    svc.translator().max_memory = 1  # exact tiles: a check at every tile
    big = _upload(svc, web_inputs.jpeg(tmp_path / "big.jpg", 320, 240), "u1")
    reached, outcome = threading.Event(), {}

    def progress(done: float, total: int, what: str) -> None:
        if ": tile " in what and not reached.is_set():
            reached.set()
            time.sleep(0.5)  # the page is closed meanwhile

    def request() -> None:
        try:
            with svc.for_page("tab-a"):
                svc.convert_images([big], progress=progress)
        except Exception as exc:  # noqa: BLE001 - the outcome is the assertion
            outcome["error"] = exc

    worker = threading.Thread(target=request)
    worker.start()
    assert reached.wait(60)
    svc.page_closed("tab-b")  # another page: nothing of its is at work
    svc.page_closed("tab-a")
    worker.join(60)
    assert isinstance(outcome.get("error"), RequestCancelled), outcome
    with svc.for_page("tab-a"):  # a new request of a page with that id (reloaded) runs
        assert [o.status for o in svc.convert_images([big]).images] == ["converted"]
    svc.close()


def test_translate_pressed_after_a_drop_does_not_translate_the_batch_again(service: WebService, tmp_path: Path) -> None:
    """A drop starts a batch; pressing Translate then (as the button invites) queued the same batch and
    translated every image a second time. The same page asking the same again gets the same results."""
    import shutil

    a = _upload(service, web_inputs.jpeg(tmp_path / "photo.jpg", 32, 24), "u1")
    label = service.default_choice.label
    steps: list[str] = []

    def run(files: list[Path], target: str = "zebra", page: str = "tab-a") -> object:
        with service.for_page(page):
            return service.convert_images(files, label, target, progress=lambda d, t, s: steps.append(s))

    first = run([a])
    assert steps and [o.status for o in first.images] == ["converted"]
    steps.clear()
    assert run([a]) is first and steps == []  # nothing translated again
    assert run([a], target="horse") is not first  # another direction
    again = run([a])
    assert again is not first and steps  # the last batch of the page is the one remembered
    steps.clear()
    assert run([a], page="tab-b") is not again  # another page
    b = _upload(service, web_inputs.jpeg(tmp_path / "photo.jpg", 40, 24), "u2")
    assert run([a, b]) is not again
    shutil.rmtree(service.jobs)  # results gone (their lifetime is over): made anew
    service.jobs.mkdir()
    fresh = run([a, b])
    assert all(o.output.exists() for o in fresh.images)
    service.page_closed("tab-a")  # a closed page's batch is forgotten
    assert run([a, b]) is not fresh


def test_a_batch_with_a_failure_runs_again_when_asked_again(service: WebService, tmp_path: Path) -> None:
    bad = service.workdir / "u1" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    with service.for_page("tab-a"):
        first = service.convert_images([bad])
        assert [o.status for o in first.images] == ["failed"]
        assert service.convert_images([bad]) is not first


def test_translate_video_pressed_after_a_drop_does_not_translate_the_clip_again(service: WebService,
                                                                               tmp_path: Path) -> None:
    clip = _upload(service, web_inputs.clip_with_sound(tmp_path / "holiday.mp4", seconds=0.5), "u1")
    label = service.default_choice.label
    with service.for_page("tab-a"):
        first = service.convert_video(clip, label, "zebra")
        assert service.convert_video(clip, label, "zebra") is first
        assert service.convert_video(clip, label, "horse") is not first
    with service.for_page("tab-b"):
        assert service.convert_video(clip, label, "zebra") is not first
