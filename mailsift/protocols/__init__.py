"""Protocol parsers and session state machines (LMTP, POP3, IMAP) over the store API."""
