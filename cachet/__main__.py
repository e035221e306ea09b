import sys

from cachet.cli import main

sys.exit(main())
