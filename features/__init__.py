"""Rolling-window state per subscriber and per calling number, and the feature vector built from it."""
