"""Built-in backends: one module each, every one a preset of the composed model."""
