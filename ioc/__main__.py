import sys

from ioc.service.cli import main

sys.exit(main())
