"""The fraudwatch command line (top floor)."""
