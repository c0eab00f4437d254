"""Training data: synthetic captioned scenes and their object sources."""
