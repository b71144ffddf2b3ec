import sys

from mailsift.cli import main

sys.exit(main())
