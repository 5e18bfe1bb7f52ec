"""The performance suite: the gateway against direct, nginx and the plug file's baselines."""
