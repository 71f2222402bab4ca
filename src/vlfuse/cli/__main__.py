"""`python -m vlfuse.cli` (the launcher `torchrun` runs for `vlfuse train --nproc N`)."""

from vlfuse.cli import main

main()
