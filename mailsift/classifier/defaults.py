"""[classifier]'s built-in values that `mailsift classify` reads (settings.py owns the section and
says what each means). Here, apart from the settings dataclass, because a one-message
`mailsift classify` without --config reads them alone: importing dataclasses (and inspect, ast
and dis with it) for them was a tenth of that process."""

DBPATH = "models"
REQUIRED = 5.0
UNSURE_POINTS = 1.0
MAX_BYTES = 262144
