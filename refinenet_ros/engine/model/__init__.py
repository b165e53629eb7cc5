"""What a model is: its description (classes, input, output), label maps, palettes, its output classes, and the shipped model."""
