"""The soak suite (SOAK-1): bounded mixed load with faults against one gateway worker."""
