"""`python -m spanline …` is the `spanline` command (works before a shell has rehashed its PATH)."""

from spanline.cli import main

main()
