"""The mail store: Maildir++, index, users, and the LMTP, POP3 and IMAP servers over it."""
