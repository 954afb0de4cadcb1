"""The ``recompile`` command line (installed as ``recompiler.cli``)."""
