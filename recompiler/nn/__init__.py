"""Modules built on recompiler's memory-light ops.

>>> from recompiler.nn import CausalLinearAttention
>>> CausalLinearAttention(16, heads=2).form
'chunked'
"""

from .linear_attention import CausalLinearAttention

__all__ = ["CausalLinearAttention"]
