import sys

from domainlm.cli import main

sys.exit(main())
