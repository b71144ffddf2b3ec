"""`mailsift serve`: the daemon that answers LMTP, POP3, IMAP and Postfix's lookup over the store.

The store (mailsift/store/) keeps users, folders and messages and knows no protocol; this
package listens, admits connections (conncaps), hands IMAP connections to worker processes
(workers, workers_main) and runs each protocol's handler (mailsift/protocols/) with a
SessionContext (context)."""
