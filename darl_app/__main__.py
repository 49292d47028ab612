import sys

from darl_app.cli import main

sys.exit(main())
