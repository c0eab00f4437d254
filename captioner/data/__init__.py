"""Training data plumbing: Karpathy-split records, the data layout check, the feature cache and
grounding targets. The synthetic scenes that such data can come from are `captioner.scenes`."""
