"""Optimizers recompiler ships: extreme tensoring (Chen et al., ICLR 2020), low-memory AdaGrad / Adam."""

from .extreme_tensoring import (
    DEFAULT_MAX_DIM,
    ExtremeTensorAdagrad,
    ExtremeTensorAdam,
    mode_dims,
    state_numbers,
)

__all__ = ["DEFAULT_MAX_DIM", "ExtremeTensorAdagrad", "ExtremeTensorAdam", "mode_dims", "state_numbers"]
