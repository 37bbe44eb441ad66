"""ssm_metarl: the package behind the SSM-MetaRL book.

State space models, CartPole task families, MAML, test-time adaptation and recursive
self-improvement, each in one small module that a chapter of the book explains.
Importing the package has no side effects: it loads no data and touches no files.
"""
from .artifacts import artifact_path, models_dir
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .ssm import DiagonalSSM, DiagonalSSMConfig, SSMConfig, StateSpaceModel, discretize, parallel_scan
from .stats import Estimate, bootstrap_ci, difference_ci
from .tasks import CartPoleTask, TaskDistribution, get_family, make_env, make_vector_env
from .rollout import EvalResult, LinearPolicy, Trajectories, collect, evaluate
from .rl import (PPOConfig, ReinforceConfig, TrainResult, UpdateGuard, ValueNet, batch_baseline,
                 discounted_returns, gae, policy_log_probs, policy_outputs, ppo_clip_loss, reinforce_loss,
                 train_ppo, train_reinforce)
from .maml import (AdaptationResult, MetaMAML, MetaRLConfig, MetaTrainResult, TaskPolicy, evaluate_adaptation,
                   held_out_tasks, meta_train, policy_gradient_loss, tune_inner_lr)
from .sine import SineConfig, SineTasks, sine_errors, train_sine

__version__ = "0.1.0"

__all__ = [
    "artifact_path", "models_dir",
    "Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint",
    "SSMConfig", "StateSpaceModel", "DiagonalSSM", "DiagonalSSMConfig", "discretize", "parallel_scan",
    "Estimate", "bootstrap_ci", "difference_ci",
    "CartPoleTask", "TaskDistribution", "get_family", "make_env", "make_vector_env",
    "EvalResult", "LinearPolicy", "Trajectories", "collect", "evaluate",
    "PPOConfig", "ReinforceConfig", "TrainResult", "UpdateGuard", "ValueNet", "batch_baseline",
    "discounted_returns", "gae", "policy_log_probs", "policy_outputs", "ppo_clip_loss", "reinforce_loss",
    "train_ppo", "train_reinforce",
    "AdaptationResult", "MetaMAML", "MetaRLConfig", "MetaTrainResult", "TaskPolicy", "evaluate_adaptation",
    "held_out_tasks", "meta_train", "policy_gradient_loss", "tune_inner_lr",
    "SineConfig", "SineTasks", "sine_errors", "train_sine",
]
