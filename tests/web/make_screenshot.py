"""Take the README's screenshot of ``imgxlate serve`` with the web tests' own setup.

    python tests/web/make_screenshot.py docs/images/serve.jpg

Starts the server on the bundled model, drops the first two of the bundled sample photos on the page in
headless Chromium, waits for the results and saves the whole page (JPEG for a .jpg name, else PNG).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import web_harness as harness

REPO = Path(__file__).resolve().parents[2]


def main(out: Path) -> None:
    chromium = harness.find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium found (apt-get install chromium, or set IMGXLATE_CHROMIUM)")
    samples = sorted((REPO / "imgxlate" / "samples").glob("*.jpg"))[:2]
    with tempfile.TemporaryDirectory() as tmp, \
            harness.run_server(["--to", "vangogh"], Path(tmp) / "serve.log") as server, \
            harness.browser(chromium) as b:
        page = harness.open_page(b, server.url, width=1200, height=900)
        text = harness.upload_images(page, samples)
        if "Translated 2 of 2" not in text:
            raise SystemExit(f"the page did not translate the samples:\n{text}\n{server.log()}")
        page.wait_for_function("() => [...document.querySelectorAll('#pairs img')].every(i => i.complete)")
        page.mouse.move(0, 0)
        out.parent.mkdir(parents=True, exist_ok=True)
        jpeg = out.suffix.lower() in (".jpg", ".jpeg")
        page.screenshot(path=str(out), full_page=True, type="jpeg" if jpeg else "png",
                        **({"quality": 88} if jpeg else {}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/serve.jpg"))
