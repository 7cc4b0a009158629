"""The `restransfer` command groups: one module each, with a ``register(subparsers)`` function.

These modules hold argument parsing and printing only. They import nothing heavy at module
level (no Keras, TensorFlow, JAX, NumPy or the library packages that load them): each handler
imports the library code it calls, so ``restransfer --help`` and argument errors stay instant.
"""
