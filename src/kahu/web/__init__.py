"""The web interface (docs/ui.md)."""
