"""Framework integrations: Flask (``flask``), Django (``django``), gunicorn (``gunicorn``),
and the debug dashboard they share (``dashboard``).

Each uses only the public observability API. Import the one you need; none is imported here.
"""
