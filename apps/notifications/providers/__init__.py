"""One folder per provider (send.py, receipts.py, settings.py); registry.py lists them."""
