import sys

from saferl.cli import main

sys.exit(main())
