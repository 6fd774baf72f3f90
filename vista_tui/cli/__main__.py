"""`python -m vista_tui.cli`: the `vista` command."""

import sys

from vista_tui.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
