"""``python -m services`` is the ``citybrain`` console script."""

from services.cli import main

main()
