"""End-of-day products built from the lake: the options chain (margin and exports come later)."""
