"""``python -m strokegraph``: the command line, which lives with the application (strokegraph.app.cli)."""

import sys

if __name__ == "__main__":
    from strokegraph.app.cli import main

    sys.exit(main())
