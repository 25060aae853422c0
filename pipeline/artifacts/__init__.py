"""The artifact folder (folder.py), what keeps it safe across runs (guard.py), and the
typed record each stage writes into it (records.py)."""
