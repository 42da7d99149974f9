"""Research harnesses: probes and benchmarks behind WORKSPACE.md's measurements (not the product CLIs)."""
