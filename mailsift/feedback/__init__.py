"""Learning from what users file into and out of Junk, and the nightly retraining."""
