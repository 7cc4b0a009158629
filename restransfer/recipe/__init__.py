"""Recipes: a YAML file read once (load), checked and resolved into a Plan (plan), run (engine).

``load_plan(path, overrides)`` is the one way in; every command takes the Plan it returns.
"""
