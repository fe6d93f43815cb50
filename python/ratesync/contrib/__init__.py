"""Optional integrations (``ratesync.contrib.fastapi``); each needs its framework."""
