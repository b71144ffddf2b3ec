"""The libmilter daemon: collects each message, scans it with clamd and the model, adds headers."""
