"""mailsift: mail filtering and mail store for people who run their own Postfix."""

__version__ = "0.1"
