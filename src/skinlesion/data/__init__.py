"""ISIC-format data: reading and validating, splitting, the generated sample, the stored splits."""
