"""`python -m llava_cit.cli ...` (as accelerate launch runs it)."""

from llava_cit.cli import main

main()
