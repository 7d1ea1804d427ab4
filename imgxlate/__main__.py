"""``python -m imgxlate`` runs the command line."""

from imgxlate.cli import main

if __name__ == "__main__":
    main()
