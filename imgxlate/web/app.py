"""The Gradio page of ``imgxlate serve``: :func:`build_app` makes the Blocks, :func:`serve` runs them.

Safe by default: bound to 127.0.0.1, uploads capped (``max_upload_mb``), one queue slot for all model
work (one shared runtime session per generator, so concurrent users wait instead of running the
machine out of memory), Gradio's temp folder pointed at the service's own, no analytics, no
server-side rendering, no run history, no web fonts fetched from elsewhere.
"""

from __future__ import annotations

import html
import itertools
import os
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

from imgxlate._units import counted, file_size
from imgxlate.errors import ImgxlateError, UsageError, brief
from imgxlate.web import require_gradio
from imgxlate.web.service import DEFAULT_MAX_UPLOAD_MB, BatchOutcome, VideoOutcome, WebService

TITLE = "imgxlate"
# Every event that runs a model shares this queue slot: one at a time, in order of arrival.
MODEL_QUEUE = "model"
DEFAULT_QUEUE_SIZE = 32
# Each status block carries a run number (data-run), so a page (or a test) can tell a new result from
# the previous one even when the text is the same.
_RUNS = itertools.count(1)


def _progress_fn(progress: Any, unit: str) -> Callable[[float, int, str], None]:
    def report(done: float, total: int, desc: str) -> None:
        progress((done, total), desc=desc, unit=unit)

    return report


def batch_summary(outcome: BatchOutcome) -> str:
    """The status block under the images: one line per image (time, size) or its error, then the
    provider line."""
    rows = []
    for o in outcome.images:
        name = html.escape(o.name)
        if o.status == "converted" and o.output is not None:
            told = "".join(f"; {html.escape(n)}" for n in o.notes)
            rows.append(
                f"<li class='ok'><b>{name}</b> &rarr; {html.escape(o.output.name)}: {o.width}x{o.height}, "
                f"{o.seconds:.2f} s, {file_size(o.output.stat().st_size)}{told}</li>"
            )
        else:
            rows.append(f"<li class='failed'><b>{name}</b> failed: {html.escape(o.reason)}</li>")
    done, failed = len(outcome.converted), len(outcome.failed)
    head = (
        f"Translated {done} of {counted(len(outcome.images), 'image')} to "
        f"<b>{html.escape(outcome.target)}</b> with {html.escape(outcome.model)} in {outcome.seconds:.1f} s"
        f"{f', {failed} failed' if failed else ''}; {html.escape(outcome.provider)}."
    )
    notes = "".join(f"<li class='note'>{html.escape(w)}</li>" for w in outcome.warnings)
    return f"<div id='status-text' data-run='{next(_RUNS)}'><p>{head}</p><ul>{''.join(rows)}{notes}</ul></div>"


def video_summary(outcome: VideoOutcome) -> str:
    cut = (f" Only the first {outcome.limited_to:g} s were converted (the page's limit); use "
           "<code>imgxlate video</code> for the whole clip." if outcome.limited_to else "")
    notes = "".join(f"<li class='note'>{html.escape(w)}</li>" for w in outcome.warnings)
    return (
        f"<div id='video-status-text' data-run='{next(_RUNS)}'><p><b>{html.escape(outcome.name)}</b> &rarr; "
        f"{html.escape(outcome.output.name)}: {outcome.frames} frames {outcome.width}x{outcome.height} to "
        f"<b>{html.escape(outcome.target)}</b> in {outcome.seconds:.1f} s, audio {html.escape(outcome.audio)}; "
        f"{html.escape(outcome.provider)}.{cut}</p><ul>{notes}</ul></div>"
    )


def _unexpected(exc: BaseException) -> str:
    """An error that is not one of imgxlate's own: its traceback goes to the server's stderr, the page
    gets one line."""
    traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, MemoryError):
        return "out of memory; try fewer or smaller images at once, or restart the server with --device cpu"
    first = brief(exc) if str(exc) else ""
    return f"unexpected {type(exc).__name__}{': ' + first if first else ''} (details in the server's log)"


def error_html(message: str, elem: str = "status-text") -> str:
    return f"<div id='{elem}' data-run='{next(_RUNS)}'><p class='failed'><b>error:</b> {html.escape(message)}</p></div>"


CSS = """
#status-text .failed, #video-status-text .failed { color: #c0392b; }
#status-text ul, #video-status-text ul { margin-top: 0.3em; }
#pairs, #pairs .grid-wrap { height: auto !important; max-height: none !important; overflow-y: visible !important; }
"""


def build_app(service: WebService) -> Any:
    """The Blocks of the page, wired to ``service``. Points ``GRADIO_TEMP_DIR`` at the service's
    temp folder first, so uploads land there and results are served from there without copies."""
    os.environ["GRADIO_TEMP_DIR"] = str(service.workdir)
    gr = require_gradio()

    labels = [c.label for c in service.choices]

    def direction_hint(label: str, target: str) -> str:
        """What to drop and what comes back, in the pair's own domain names (a first visitor saw
        "vangogh2photo" and "vangogh" and no word of what goes in)."""
        targets = service.choice(label).targets
        others = [t for t in targets if t != target]
        if len(targets) < 2:  # one generator: no other way round to pick
            return f"Drop pictures: each comes back as **{target}**."
        what = f"**{others[0]}** pictures" if len(others) == 1 else "pictures"
        return f"Drop {what}: each comes back as **{target}**. *Translate to* picks the other way round."

    def targets_for(label: str) -> Any:
        choice = service.choice(label)
        return (gr.update(choices=list(choice.targets), value=choice.default_target),
                direction_hint(label, choice.default_target))

    # Gradio finds its progress tracker by this default value (the documented way).
    def run_images(files: list[str] | None, label: str, target: str, request: gr.Request,
                   progress: Any = gr.Progress()) -> Any:  # noqa: B008
        if not files:
            return error_html("no images uploaded; drop one or more image files above"), [], None
        try:
            with service.for_page(_session(request)):
                outcome = service.convert_images(files, label, target, progress=_progress_fn(progress, "images"))
        except ImgxlateError as err:
            return error_html(str(err)), [], None
        except Exception as exc:  # noqa: BLE001 - a bug or a full disk must not leave the page stale
            return error_html(_unexpected(exc)), [], None
        gallery: list[tuple[str, str]] = []
        for o in outcome.converted:
            if o.input_preview is not None and o.output_preview is not None:
                gallery.append((str(o.input_preview), f"{o.name} (input)"))
                shown = o.output.name if o.output else o.name
                gallery.append((str(o.output_preview), f"{shown} ({outcome.target}, {o.seconds:.2f} s)"))
        downloads = [str(o.output) for o in outcome.converted if o.output is not None]
        if outcome.zip_path is not None and len(downloads) > 1:
            downloads.append(str(outcome.zip_path))
        for o in outcome.failed:
            gr.Warning(f"{o.name}: {o.reason}")
        return batch_summary(outcome), gallery, downloads or None

    def run_video(path: str | None, label: str, target: str, request: gr.Request,
                  progress: Any = gr.Progress()) -> Any:  # noqa: B008
        if not path:
            return error_html("no video uploaded; drop a short clip above", "video-status-text"), None, None
        try:
            with service.for_page(_session(request)):
                outcome = service.convert_video(path, label, target, progress=_progress_fn(progress, "frames"))
        except ImgxlateError as err:
            return error_html(str(err), "video-status-text"), None, None
        except Exception as exc:  # noqa: BLE001
            return error_html(_unexpected(exc), "video-status-text"), None, None
        return video_summary(outcome), str(outcome.output), str(outcome.output)

    first = service.default_choice
    with gr.Blocks(title=TITLE, delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown(
            "## imgxlate\nDrop pictures in, see them translated, take them home: each result keeps its "
            "file's format and name, with the domain added (`photo.vangogh.jpg`; EXIF orientation, colour "
            "profile, transparency and 16 bits kept), and all of them come as one zip."
        )
        with gr.Row():
            model = gr.Dropdown(labels, value=first.label, label="Model", elem_id="model", interactive=True)
            target = gr.Dropdown(list(first.targets), value=service.default_target, label="Translate to",
                                 elem_id="target", interactive=True)
        hint = gr.Markdown(direction_hint(first.label, service.default_target), elem_id="direction")
        with gr.Tab("Images", elem_id="tab-images"):
            files = gr.File(file_count="multiple", label="Images: drop one or many here, or click to choose",
                            elem_id="images-in")
            run = gr.Button("Translate", variant="primary", elem_id="translate")
            status = gr.HTML(elem_id="status", min_height=80)
            # previews only (at most 1024 px, JPEG): no download or share button that would hand one
            # out as the result (the results are in Downloads below, with their names and formats)
            gallery = gr.Gallery(label="Input | result", columns=2, object_fit="contain",
                                 elem_id="pairs", interactive=False, buttons=["fullscreen"])
            downloads = gr.File(file_count="multiple", label="Downloads (each result, and all as one zip)",
                                elem_id="downloads", interactive=False)
        with gr.Tab("Video", elem_id="tab-video"):
            limit = service.max_video_seconds
            gr.Markdown(
                "A short clip in, the translated MP4 (same frame rate, size and sound) out"
                + (f"; the first {limit:g} s of longer clips." if limit else ".")
            )
            video_in = gr.Video(sources=["upload"], label="Clip", elem_id="video-in")
            video_run = gr.Button("Translate video", variant="primary", elem_id="translate-video")
            video_status = gr.HTML(elem_id="video-status", min_height=80)
            video_out = gr.Video(label="Result", elem_id="video-out", interactive=False)
            video_file = gr.File(label="Download", elem_id="video-download", interactive=False)

        def page_closed(request: gr.Request) -> None:
            # a closed or reloaded tab: its request at work stops, and the queue moves on
            if (session := _session(request)) is not None:
                service.page_closed(session)

        # Gradio hands a handler its gr.Request by the parameter's type, read with get_type_hints: the
        # annotations here are strings (postponed) naming the local `gr`, which it cannot resolve.
        for handler in (run_images, run_video, page_closed):
            handler.__annotations__["request"] = gr.Request
        demo.unload(page_closed)
        model.change(targets_for, model, [target, hint], queue=False)
        target.change(direction_hint, [model, target], hint, queue=False)
        image_io: dict[str, Any] = {
            "fn": run_images, "inputs": [files, model, target], "outputs": [status, gallery, downloads],
            "concurrency_id": MODEL_QUEUE, "concurrency_limit": 1, "show_progress": "full",
            "show_progress_on": [status],
        }
        # A drop while a batch runs: Gradio's default for uploads ("once") dropped that event, so files
        # added meanwhile were never translated. "always_last": one more run, after this one, of
        # everything in the box then (the earlier files again with it: a batch is remembered whole, not file by file).
        files.upload(**image_io, trigger_mode="always_last")
        run.click(**image_io)
        video_io: dict[str, Any] = {
            "fn": run_video, "inputs": [video_in, model, target], "outputs": [video_status, video_out, video_file],
            "concurrency_id": MODEL_QUEUE, "concurrency_limit": 1, "show_progress_on": [video_status],
        }
        video_in.upload(**video_io, trigger_mode="always_last")
        video_run.click(**video_io)
    return demo


def _session(request: Any) -> str | None:
    """The browser session a request comes from (None when Gradio gives none: the Python client)."""
    return request.session_hash if request is not None else None


def _theme(gr: Any) -> Any:
    # System fonts only: the default theme would make every browser fetch fonts from Google.
    return gr.themes.Default(
        font=["system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )


def check_host(host: str) -> None:
    """A --host that is not a name or address of this machine is a usage error saying so (it used to
    reach the port search, whose failure blamed the port)."""
    import errno
    import socket

    what = ("use 127.0.0.1 (this machine only), 0.0.0.0 (every network interface) or an address of this "
            "machine")
    if ":" in host:  # Gradio builds its own URLs without the brackets IPv6 needs, and fails
        raise UsageError(f"--host {host!r}: the page cannot listen on IPv6 addresses; {what}")
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r} is not a known name or address ({exc.strerror}); {what}") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"--host {host!r} is not an address of this machine; {what}") from None


def serve(
    service: WebService,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    block: bool = True,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Build and launch the page; with ``block`` wait until Ctrl-C, then close it. Returns the Blocks."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {port}")
    if max_upload_mb <= 0:
        raise UsageError(f"--max-upload-mb must be more than 0, got {max_upload_mb:g}")
    check_host(host)
    demo = build_app(service)  # first: it points Gradio's temp folder at the service's, then imports it
    gr = require_gradio()
    demo.queue(max_size=queue_size, default_concurrency_limit=1)
    try:
        demo.launch(
            server_name=host, server_port=port, max_file_size=int(max_upload_mb * 1024 * 1024),
            prevent_thread_lock=True, quiet=True, show_error=False, ssr_mode=False, mcp_server=False,
            run_history=False, footer_links=["gradio"], theme=_theme(gr), css=CSS, inbrowser=False,
            share=False,
        )
    except OSError:  # Gradio's message names its own settings (GRADIO_SERVER_PORT, server_port)
        raise UsageError(
            f"cannot listen on {host}:{port}: the port is in use or not allowed; pick a free port with --port "
            "or stop what is using it"
        ) from None
    # 0.0.0.0 is every address, not one to open: name the machine for the colleagues it is served to
    port = demo.server_port
    where = (f"http://localhost:{port}/ here, http://{socket.gethostname()}:{port}/ from other machines (in a "
             "container: the host's name)") if host == "0.0.0.0" else f"http://{host}:{port}/"
    (log or (lambda line: print(line, file=sys.stderr, flush=True)))(f"imgxlate serve: {where} (Ctrl-C to stop)")
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo
