"""ssm_metarl: the package behind the SSM-MetaRL book.

State space models, CartPole task families, MAML, test-time adaptation and recursive
self-improvement, each in one small module that a chapter of the book explains.
Importing the package has no side effects: it loads no data and touches no files.
"""
from .artifacts import artifact_path, models_dir
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .ssm import SSMConfig, StateSpaceModel
from .stats import Estimate, bootstrap_ci, difference_ci

__version__ = "0.1.0"

__all__ = [
    "artifact_path", "models_dir",
    "Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint",
    "SSMConfig", "StateSpaceModel",
    "Estimate", "bootstrap_ci", "difference_ci",
]
