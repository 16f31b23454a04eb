"""Built-in plugin consult_billing (filled in by its own issue)."""
