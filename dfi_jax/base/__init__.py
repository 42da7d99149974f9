"""The base every layer shares: settings rules and run state, the workdir lock, files written
atomically, package versions."""
