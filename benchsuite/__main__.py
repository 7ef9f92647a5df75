"""``python -m benchsuite`` = the ``benchsuite`` command."""

from .cli import main

main(prog_name="benchsuite")
