"""Recipes: one YAML file describes a training run; validated strictly before any work."""
