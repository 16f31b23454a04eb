"""Built-in plugin live_qa (filled in by its own issue)."""
