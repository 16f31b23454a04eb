"""The core every deployment runs. It knows no feature by name."""
