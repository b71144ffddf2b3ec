"""A private clamd for the suite (shared with `make run`): see mailsift.localstack.clamd."""

from mailsift.localstack.clamd import (CLAMD, EICAR, EICAR_NAME, TESTFILES, ClamdInstance,  # noqa: F401
                                       available, ping, write_database)
