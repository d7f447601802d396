"""``python -m bot`` is ``supportbot``."""

from bot.cli import main

main(prog_name="supportbot")
