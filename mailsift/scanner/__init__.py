"""Virus scanners (clamd)."""
