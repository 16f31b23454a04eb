"""Built-in plugin course_drip (filled in by its own issue)."""
