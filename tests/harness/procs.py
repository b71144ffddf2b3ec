"""Free ports, readiness polling and daemons stopped by PID (shared with `make run`)."""

from mailsift.localstack.procs import (Daemon, free_port, kill_pidfile, tcp_ready, unix_ready,  # noqa: F401
                                       wait_for)
