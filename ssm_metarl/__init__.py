"""ssm_metarl: the package behind the SSM-MetaRL book.

State space models, CartPole task families, policies, policy gradients, MAML, test-time
adaptation and recursive self-improvement, each in one small module that a chapter of
the book explains. Importing the package has no side effects: it loads no data and
touches no files.
"""

from .adapt.adapters import (
    HybridAdaptationConfig,
    HybridAdapter,
    StandardAdaptationConfig,
    StandardAdapter,
    replay_kl,
)
from .adapt.buffer import ExperienceBuffer
from .adapt.in_context import (
    InContextConfig,
    InContextResult,
    evaluate_in_context,
    hidden_states,
    train_in_context,
)
from .cartpole.envs import (
    GymnasiumComparison,
    compare_with_gymnasium,
    make_env,
    make_vector_env,
)
from .cartpole.rollout import EvalResult, collect, evaluate
from .cartpole.rollout_speed import RolloutRates, naive_rollout, rollout_rates
from .cartpole.tasks import CartPoleTask, TaskDistribution, get_family
from .cartpole.trajectories import Trajectories
from .io.artifacts import (
    ALIASES,
    Loaded,
    artifact_path,
    load_card,
    load_or_train,
    models_dir,
)
from .io.checkpoint import (
    Checkpoint,
    CheckpointError,
    DamagedCheckpointError,
    UnsafeCheckpointError,
    WrongCheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from .meta.evaluation import (
    TEST_SEED,
    AdaptationResult,
    card_evaluation,
    evaluate_adaptation,
    held_out_tasks,
    test_tasks,
    tune_inner_lr,
)
from .meta.maml import METHODS, MetaMAML, MetaStep
from .meta.maml_rl import MetaRLConfig, TaskPolicy, policy_gradient_loss, task_batch
from .meta.per_task import TaskBatchedLoss, expand_params, stack_params
from .meta.run_state import MetaRunState
from .meta.sine import SINE_TEST_SEED, SineConfig, SineTasks, sine_errors, train_sine
from .meta.training import MetaTrainResult, meta_epoch, meta_train
from .models.linear_recurrence import discretize, parallel_scan
from .models.policy import (
    CallablePolicy,
    LinearPolicy,
    Policy,
    RL2Policy,
    SSMPolicy,
    TaskBatchedPolicy,
    action_log_probs,
    as_policy,
    policy_log_probs,
    select_actions,
)
from .models.s4d import DiagonalSSM, DiagonalSSMConfig
from .models.s4d_speed import forward_backward_variants
from .models.ssm import SSMConfig, StateSpaceModel, balancing_ssm
from .report.stats import VERDICTS, Estimate, bootstrap_ci, difference_ci, verdict
from .report.timing import speedup, time_interleaved, time_rounds, torch_threads
from .rl.batches import stratified_tasks
from .rl.configs import PPOConfig, ReinforceConfig
from .rl.loops import TrainResult, ValueNet, train_ppo, train_reinforce
from .rl.losses import (
    UpdateGuard,
    batch_baseline,
    clipped_surrogate,
    discounted_returns,
    gae,
    masked_mean,
    normalize_advantages,
    ppo_clip_loss,
    reinforce_loss,
    task_means,
    value_loss,
)
from .rsi.agent import CycleReport, RecursiveSelfImprovementAgent, RSIConfig, RSIHalted

__version__ = "0.1.0"

__all__ = [
    "ALIASES",
    "Loaded",
    "artifact_path",
    "load_card",
    "load_or_train",
    "models_dir",
    "Checkpoint",
    "CheckpointError",
    "DamagedCheckpointError",
    "UnsafeCheckpointError",
    "WrongCheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "VERDICTS",
    "Estimate",
    "bootstrap_ci",
    "difference_ci",
    "verdict",
    "speedup",
    "time_interleaved",
    "time_rounds",
    "torch_threads",
    "SSMConfig",
    "StateSpaceModel",
    "balancing_ssm",
    "DiagonalSSM",
    "DiagonalSSMConfig",
    "discretize",
    "forward_backward_variants",
    "parallel_scan",
    "CartPoleTask",
    "GymnasiumComparison",
    "TaskDistribution",
    "compare_with_gymnasium",
    "get_family",
    "make_env",
    "make_vector_env",
    "CallablePolicy",
    "LinearPolicy",
    "Policy",
    "RL2Policy",
    "SSMPolicy",
    "TaskBatchedPolicy",
    "action_log_probs",
    "as_policy",
    "policy_log_probs",
    "select_actions",
    "EvalResult",
    "RolloutRates",
    "Trajectories",
    "collect",
    "evaluate",
    "naive_rollout",
    "rollout_rates",
    "UpdateGuard",
    "batch_baseline",
    "clipped_surrogate",
    "discounted_returns",
    "gae",
    "masked_mean",
    "normalize_advantages",
    "ppo_clip_loss",
    "reinforce_loss",
    "task_means",
    "value_loss",
    "PPOConfig",
    "ReinforceConfig",
    "TrainResult",
    "ValueNet",
    "train_ppo",
    "train_reinforce",
    "stratified_tasks",
    "METHODS",
    "MetaMAML",
    "MetaStep",
    "TaskBatchedLoss",
    "expand_params",
    "stack_params",
    "TEST_SEED",
    "AdaptationResult",
    "MetaRLConfig",
    "TaskPolicy",
    "card_evaluation",
    "evaluate_adaptation",
    "held_out_tasks",
    "test_tasks",
    "policy_gradient_loss",
    "task_batch",
    "tune_inner_lr",
    "MetaRunState",
    "MetaTrainResult",
    "meta_epoch",
    "meta_train",
    "SINE_TEST_SEED",
    "SineConfig",
    "SineTasks",
    "sine_errors",
    "train_sine",
    "ExperienceBuffer",
    "HybridAdaptationConfig",
    "HybridAdapter",
    "StandardAdaptationConfig",
    "StandardAdapter",
    "replay_kl",
    "InContextConfig",
    "InContextResult",
    "evaluate_in_context",
    "hidden_states",
    "train_in_context",
    "CycleReport",
    "RecursiveSelfImprovementAgent",
    "RSIConfig",
    "RSIHalted",
]
