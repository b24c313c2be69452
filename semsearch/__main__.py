"""``python -m semsearch …`` is the ``semsearch`` command."""

from .cli import main

if __name__ == "__main__":
    main()
