import sys

from mailsift.localstack.stack import main

sys.exit(main())
