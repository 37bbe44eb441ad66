"""A model that saves itself as one checkpoint with the config that rebuilds it.

`Checkpointed` gives a module `save` and `load` (as the model card writes them:
`model.save(path)`, `model.load(path)`, and also `Model.load(path)`), on top of the
atomic, weights-only checkpoints of `ssm_metarl.io.checkpoint`. A model mixes it in and
names its config dataclass; it needs nothing else. Taught in chapter 1
(`book/01_state_space_models.md`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict
from pathlib import Path

from ..io.checkpoint import (
    WrongCheckpointError,
    check_weights,
    load_checkpoint,
    save_checkpoint,
)

__all__ = ["Checkpointed"]


class _class_or_instance_method:
    """Bind a method to the instance when called on one, to the class otherwise."""

    def __init__(self, func):
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj, cls):
        return functools.partial(self.func, cls if obj is None else obj)


class Checkpointed:
    """Mixin for an `nn.Module` saved with its config: `save`, and `load` on the class
    or on a model. Defined in chapter 1 (`01_state_space_models`).

    The module keeps its sizes in `self.config`, an instance of `config_class`: a
    dataclass whose fields are the constructor's arguments, so the saved config
    rebuilds the model. The checkpoint's kind is the class name.
    """

    config_class: type  #: the dataclass of `self.config`

    def save(
        self,
        path: str | os.PathLike,
        extra: dict | None = None,
        card: dict | None = None,
    ) -> Path:
        """Save weights and config atomically (see `ssm_metarl.io.checkpoint`); with
        `card`, also `PATH.json`, which records the weights' sha256 (the pair is one
        unit)."""
        return save_checkpoint(
            path,
            kind=type(self).__name__,
            config=asdict(self.config),
            state_dict=self.state_dict(),
            extra=extra,
            card=card,
        )

    @_class_or_instance_method
    def load(self_or_cls, path: str | os.PathLike, allow_nonfinite: bool = False):
        """Load a checkpoint.

        `Model.load(path)` (e.g. `StateSpaceModel.load(path)`) builds and returns a new
        model from the saved config. `model.load(path)` (the model card's form) loads in
        place after checking that the saved config matches this model's, and returns the
        model. Every key, shape and dtype must match (named in the error if not);
        NaN/inf weights are refused unless `allow_nonfinite=True`.
        """
        if isinstance(self_or_cls, type):
            ckpt = load_checkpoint(
                path, kind=self_or_cls.__name__, allow_nonfinite=allow_nonfinite
            )
            config_class = self_or_cls.config_class
            try:
                config = config_class(**ckpt.config)
            except (TypeError, ValueError) as exc:
                raise WrongCheckpointError(
                    f"{path}: checkpoint config does not fit {config_class.__name__} "
                    f"({exc})"
                ) from None
            model = self_or_cls(**asdict(config))
        else:
            model = self_or_cls
            ckpt = load_checkpoint(
                path,
                kind=type(model).__name__,
                expected_config=asdict(model.config),
                allow_nonfinite=allow_nonfinite,
            )
        check_weights(ckpt.state_dict, model.state_dict(), source=str(path))
        model.load_state_dict(ckpt.state_dict)
        return model
