"""sce: safety-critical event VLM post-training."""
