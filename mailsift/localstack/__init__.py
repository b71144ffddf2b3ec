"""Private instances of the real components (Postfix, clamd) and our daemons on loopback, for
`make run` and for the test suite. Nothing here touches /etc/postfix or system services."""
