"""Load a model file for ``recompile plan``: ``build() -> (model, example_inputs)``, or
module-level ``model`` and ``example_inputs``; optionally ``loss(output) -> scalar``.

The file's folder is put on ``sys.path`` while it loads, as when running it as a script,
so a model file may import helpers beside it.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelFileError


@dataclass
class ModelSpec:
    model: Any
    example_inputs: Any
    loss_fn: Callable | None
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem


def _one_line(e: BaseException) -> str:
    msg = next((line.strip() for line in str(e).strip().splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def load_model_file(path) -> ModelSpec:
    """Import ``path`` and return its model, example inputs and loss (None: the default loss)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    folder = str(path.resolve().parent)
    name = f"_recompile_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dynamo looks classes defined in the file up by module name
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
        if callable(getattr(module, "build", None)):
            try:
                built = module.build()
            except SystemExit as e:
                # sys.exit() in build() would end `recompile` itself, silently and with the
                # model's exit code (0 reads as success): a model file must return its model
                raise ModelFileError(f"{path}: build() called sys.exit({e.code!r}) instead of returning "
                                     "(model, example_inputs)") from e
            except Exception as e:  # noqa: BLE001 - the user's code: report it in one line
                raise ModelFileError(f"{path}: build() raised {_one_line(e)}") from e
            if not (isinstance(built, (tuple, list)) and len(built) == 2):
                raise ModelFileError(f"{path}: build() must return (model, example_inputs)")
            model, example_inputs = built
        elif hasattr(module, "model") and hasattr(module, "example_inputs"):
            model, example_inputs = module.model, module.example_inputs
        else:
            raise ModelFileError(f"{path} defines neither build() nor module-level `model` and `example_inputs`")
    except ModelFileError:
        raise
    except SystemExit as e:  # a script's `sys.exit(main())` guard-less at module level
        raise ModelFileError(f"{path}: called sys.exit({e.code!r}) while loading; guard a script's own "
                             "code with `if __name__ == \"__main__\":`") from e
    except Exception as e:  # noqa: BLE001 - importing the user's file raised
        raise ModelFileError(f"{path}: raised {_one_line(e)} while loading") from e
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    if not isinstance(model, torch.nn.Module):
        raise ModelFileError(f"{path}: the model is a {type(model).__name__}, not a torch.nn.Module")
    loss_fn = getattr(module, "loss", None)
    if loss_fn is not None and not callable(loss_fn):
        raise ModelFileError(f"{path}: `loss` must be a function loss(output) -> scalar")
    return ModelSpec(model=model, example_inputs=example_inputs, loss_fn=loss_fn, path=path)
