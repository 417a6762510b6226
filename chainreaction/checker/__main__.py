"""``python -m chainreaction.checker HISTORY.jsonl``: the same as ``chainreaction check``."""

import sys

from .report import main

if __name__ == "__main__":
    sys.exit(main())
