"""Watching mailsift run: Prometheus metrics (metrics.py) and `mailsift check-config` (checkconfig.py)."""
