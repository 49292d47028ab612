import sys

from darl_core.cli import main

sys.exit(main())
