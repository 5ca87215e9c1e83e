"""``python -m host``: the ``minihost`` command where its script is not on ``PATH``
(an environment that is not activated, an image without scripts)."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="python -m host")
