"""Research harnesses: probes and benchmarks behind docs/'s measurements (not the product CLIs)."""
