import sys

from derivlake.cli import main

sys.exit(main())
