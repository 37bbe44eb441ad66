"""Chapter 6's library peers: Stable-Baselines3's PPO and DQN with RL Zoo's
CartPole-v1 settings.

Optional: needs the ``bench`` extra (``pip install -e .[bench]``); SB3 is imported only
when a peer is built. The peers run (:mod:`ssm_metarl.bench.peer_runs`) trains them.
Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

__all__ = ["ZOO", "ZOO_SOURCE", "sb3_model"]

#: RL Zoo's tuned CartPole-v1 settings (DLR-RM/rl-baselines3-zoo, hyperparams/ppo.yml
#: and dqn.yml at commit 22e3ff2), read and restated; ``lin_x`` means a rate falling
#: linearly from x to 0 over the run.
ZOO = {
    "ppo": {
        "n_envs": 8,
        "n_timesteps": 100_000,
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    "dqn": {
        "n_envs": 1,
        "n_timesteps": 50_000,
        "learning_rate": 2.3e-3,
        "batch_size": 64,
        "buffer_size": 100_000,
        "learning_starts": 1000,
        "gamma": 0.99,
        "target_update_interval": 10,
        "train_freq": 256,
        "gradient_steps": 128,
        "exploration_fraction": 0.16,
        "exploration_final_eps": 0.04,
        "net_arch": [256, 256],
    },
}
ZOO_SOURCE = (
    "github.com/DLR-RM/rl-baselines3-zoo @ 22e3ff2, hyperparams/{ppo,dqn}.yml, "
    "CartPole-v1"
)


def _lin(value):
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def sb3_model(algo: str, seed: int, zoo: dict, env=None):
    """An untrained SB3 ``PPO`` or ``DQN`` (`algo`) with the settings `zoo` (an entry of
    ``ZOO``), on `env` or on ``zoo["n_envs"]`` seeded copies of real ``CartPole-v1``.
    Chapter 6."""
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = (
        env
        if env is not None
        else make_vec_env("CartPole-v1", n_envs=zoo["n_envs"], seed=seed)
    )
    if algo == "ppo":
        keys = ("n_steps", "batch_size", "gae_lambda", "gamma", "n_epochs", "ent_coef")
        return PPO(
            "MlpPolicy",
            env,
            seed=seed,
            device="cpu",
            learning_rate=_lin(zoo["learning_rate"]),
            clip_range=_lin(zoo["clip_range"]),
            **{k: zoo[k] for k in keys},
        )
    keys = (
        "learning_rate",
        "batch_size",
        "buffer_size",
        "learning_starts",
        "gamma",
        "target_update_interval",
        "train_freq",
        "gradient_steps",
        "exploration_fraction",
        "exploration_final_eps",
    )
    return DQN(
        "MlpPolicy",
        env,
        seed=seed,
        device="cpu",
        policy_kwargs={"net_arch": zoo["net_arch"]},
        **{k: zoo[k] for k in keys},
    )
