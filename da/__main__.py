"""`python -m da ...` and `torchrun --nproc_per_node=K -m da train ...`: the `da` command."""

import sys

from da.cli import main

sys.exit(main())
