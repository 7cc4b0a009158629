"""Diagnostics: complexity tables, gradient flow, feature probes and plots."""
