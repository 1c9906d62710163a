import sys

from strokegraph.cli import main

sys.exit(main())
