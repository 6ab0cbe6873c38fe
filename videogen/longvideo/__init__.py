"""Long videos: sliding-window continuation from tokens (``continuation.py``) and the drift it has
(``drift.py``: the judge per window, identity persistence, bounce physics)."""
