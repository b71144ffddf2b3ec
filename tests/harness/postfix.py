"""A private Postfix instance for tests (shared with `make run`): see mailsift.localstack.postfix."""

from mailsift.localstack.postfix import (PostfixInstance, make_workdir,  # noqa: F401
                                         wait_queue_empty)
