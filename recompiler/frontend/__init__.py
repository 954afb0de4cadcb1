"""From a PyTorch model to a CostGraph: capture (dynamo + AOTAutograd) and the cost model.

The only package besides ``runtime/`` that imports torch internals.
"""

from .capture import Captured, capture, lower

__all__ = ["Captured", "capture", "lower"]
