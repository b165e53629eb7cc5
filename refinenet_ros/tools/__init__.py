"""Command-line programs on top of the other layers: export, benchmarks, the demo."""
