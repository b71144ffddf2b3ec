"""Helpers the suite uses to start real components on loopback and stop them by PID."""
