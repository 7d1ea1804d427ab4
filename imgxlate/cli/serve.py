"""``imgxlate serve``: the web page (Gradio, the ``web`` extra) on the same engine as the CLI.

Only options and messages here; the page is :mod:`imgxlate.web.app`, the work :mod:`imgxlate.web.service`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Annotated, Any, Literal, Optional

import typer
from rich.markup import escape

from imgxlate.cli.common import (
    PANEL_DEVICE,
    DeviceOpt,
    MaxPixelsOpt,
    ModelOpt,
    ThreadsOpt,
    ToOpt,
    handle_errors,
    print_warning,
    stderr,
)

LOCAL_HOSTS = ("127.0.0.1", "localhost")
BACKEND_CHOICES = ("auto", "onnxruntime", "openvino")
PANEL_SERVER = "Server"


def _stop_on_signals(service: Any) -> None:
    """Ctrl-C and SIGTERM (a service manager, ``docker stop``) stop the page the normal way: the temp
    folder goes, "stopped", exit 0. (``main()``'s early SIGINT handler would exit 130 as "interrupted":
    for a server, Ctrl-C is how it is meant to end.) A second signal while the first is handled (the
    wait for a request in flight) ends the process at once, the temp folder removed first. A signal
    the server was started with ignored stays ignored (as every command keeps it)."""
    if threading.current_thread() is not threading.main_thread():
        return
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if not seen:
            seen.append(signum)
            service.stop()  # requests in flight end now, so that the web server's close does not wait on them
            raise KeyboardInterrupt
        service.remove_workdir()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)


def serve(
    host: Annotated[str, typer.Option("--host", rich_help_panel=PANEL_SERVER,
                                      help="Address to listen on (0.0.0.0: every network; the page has no "
                                           "login).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, rich_help_panel=PANEL_SERVER,
                                      help="Port to listen on.")] = 7860,
    model: ModelOpt = None,
    to: ToOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
    backend: Annotated[
        Optional[Literal[BACKEND_CHOICES]],  # noqa: UP045 - typer needs Optional on 3.10
        typer.Option("--backend", case_sensitive=False, show_default=False, rich_help_panel=PANEL_DEVICE,
                     help="Inference runtime, as for convert (default: auto)."),
    ] = None,
    max_pixels: MaxPixelsOpt = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.001, rich_help_panel=PANEL_SERVER,
                            help="Largest file accepted, in MB, per file (refused by the page and the server).")
    ] = 200.0,
    max_video_seconds: Annotated[
        float, typer.Option("--max-video-seconds", min=0.0, rich_help_panel=PANEL_SERVER,
                            help="Convert at most this much of each clip (0: no limit).")
    ] = 60.0,
    queue_size: Annotated[
        int, typer.Option("--queue-size", min=1, rich_help_panel=PANEL_SERVER,
                          help="Requests that may wait for the model before new ones are turned away.")
    ] = 32,
) -> None:
    """Start the web page: drop pictures or a short clip in, see them translated, download the results."""
    from imgxlate.web import check_gradio_installed

    ended = True
    with handle_errors():
        check_gradio_installed()  # the clear "install the web extra" message before any model is loaded
        from imgxlate.web.app import check_host
        from imgxlate.web.service import WebService

        check_host(host)  # before the warning below: an address that is not this machine's is an error
        service = WebService(model=model, to=to, device=device, threads=threads, backend=backend,
                             max_pixels=max_pixels, max_video_seconds=max_video_seconds or None)
        try:
            # Gradio fixes its temp folder when it is imported: the service's, so nothing is left elsewhere
            from imgxlate.web.app import serve as run_page

            _stop_on_signals(service)
            translator = service.translator()
            stderr.print(f"{escape(translator.describe())}; {escape(service.provider_line(translator))}")
            stderr.print(f"temp folder: {escape(str(service.workdir))} (uploads and results; removed on exit)")
            if host not in LOCAL_HOSTS:
                print_warning(f"listening on {host}: anyone who can reach this machine can use the page "
                              "(there is no login)")
            try:
                run_page(service, host=host, port=port, max_upload_mb=max_upload_mb, queue_size=queue_size,
                         log=lambda line: stderr.print(escape(line)))
            except KeyboardInterrupt:
                pass
        finally:
            # a request in flight stops at its next tile or frame; the sessions go once it has
            ended = service.close()
    stderr.print("stopped")
    if not ended:  # a request is still inside the runtime: unloading it under that thread aborts the process
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
