"""`python -m cnntricks ...`, as torchrun starts it: torchrun --nproc_per_node=2 -m cnntricks train ..."""
import sys

from cnntricks.cli import main

sys.exit(main())
