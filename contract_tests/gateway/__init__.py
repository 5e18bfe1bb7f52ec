"""The gateway contract suite: the implementation's gateway in front of the fake service."""
