"""Sizes as people read them: decimal units, one rule for the CLI and the web page."""

from __future__ import annotations

from imgxlate._units import counted, file_size


def test_sizes_are_decimal_like_file_managers_and_the_docs() -> None:
    # the bundled pair, 23 139 544 bytes, was listed as "22.1 MB" (MiB) while the docs say 23 MB
    assert file_size(23_139_544) == "23.1 MB"
    assert [file_size(n) for n in (0, 999, 1000, 3_800, 999_949, 11_571_000, 2_400_000_000)] == [
        "0 B", "999 B", "1.0 KB", "3.8 KB", "999.9 KB", "11.6 MB", "2.4 GB"]
    assert [file_size(n) for n in (999_950, 999_960_000)] == ["1.0 MB", "1.0 GB"]  # not "1000.0 KB"


def test_counts_take_the_noun_in_their_number() -> None:
    # the training banner said "(1 images)" and "1 threads"
    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "process", "processes") == "1 process" and counted(3, "process", "processes") == "3 processes"
