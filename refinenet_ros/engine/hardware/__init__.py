"""What this machine has: CPU features, device names, precisions, and memory given back after large frames."""
