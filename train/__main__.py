"""``python -m imgxlate.train`` = ``imgxlate-train``."""

from imgxlate.train.cli import main

main()
