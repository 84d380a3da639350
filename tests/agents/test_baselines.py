"""SB3 PPO baselines: weight transfer, step budgets, the task-resampling env, adaptation, resume."""

import copy
import functools
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_checker import check_env

import envs
from agents import AGENTS, PPOMultiTask, PPOScratch
from agents.sb3 import make_multitask_env
from agents.sb3.ppo import episodes_seed, isolated_rng
from agents.sb3.transfer import actor_params, load_actor, rollout_buffer
from metarobot.agent import Adaptation, MetaBatch
from metarobot.policies import GaussianMLPPolicy, Params, expand_params
from metarobot.run.build import RunParts, build, resolve
from metarobot.run.checkpoints import load_checkpoint, save_checkpoint
from metarobot.run.config import RunConfig
from tests.metarobot.run.test_training import TINY

HORIZON = TINY.horizon


@pytest.fixture
def scratch() -> Iterator[RunParts]:
    parts = build(resolve(replace(TINY, agent="ppo-scratch")), {"batch_size": 8, "n_epochs": 2})
    yield parts
    parts.close()


def multitask_parts(**agent_config: int) -> RunParts:
    config = resolve(replace(TINY, agent="ppo-multitask"))
    return build(config, {"n_steps": 16, "n_envs": 2, "batch_size": 8, **agent_config})


def random_params(policy: GaussianMLPPolicy, seed: int) -> Params:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(p.shape, generator=generator) * 0.5
        for name, p in policy.meta_parameters().items()
    }


def sample(parts: RunParts, params: Params | None = None, tasks: int = 2, seed: int = 0):
    task_list = parts.family.sample_tasks(tasks, "test", seed=seed)
    if params is None:
        meta = parts.agent.policy.meta_parameters()
        params = expand_params({k: v.detach() for k, v in meta.items()}, tasks)
    return parts.sampler.sample(task_list, params, TINY.episodes_per_task, seed=seed)


def test_both_baselines_are_registered() -> None:
    assert AGENTS["ppo-scratch"] is PPOScratch and AGENTS["ppo-multitask"] is PPOMultiTask


def test_sb3_actor_gives_the_same_actions_and_log_probs(scratch: RunParts) -> None:
    policy, sb3 = scratch.agent.policy, scratch.agent.learner.policy
    params = random_params(policy, seed=1)
    load_actor(sb3, policy, params)
    obs = torch.randn(32, policy.obs_dim)
    ours = policy.distribution(obs, params)
    theirs = sb3.get_distribution(obs).distribution
    actions = ours.sample()
    torch.testing.assert_close(theirs.mean, ours.mean)
    torch.testing.assert_close(theirs.stddev, ours.stddev)
    torch.testing.assert_close(sb3._predict(obs, deterministic=True), ours.mean)
    _, log_probs, _ = sb3.evaluate_actions(obs, actions)
    torch.testing.assert_close(log_probs, ours.log_prob(actions).sum(-1))
    back = actor_params(sb3, policy)
    assert back.keys() == params.keys()
    for name in params:
        torch.testing.assert_close(back[name], params[name], rtol=0, atol=0)


def test_buffer_holds_the_sampled_steps_with_the_samplers_log_probs(scratch: RunParts) -> None:
    agent = scratch.agent
    params = expand_params(random_params(agent.policy, seed=2), 1)
    episodes = sample(scratch, params, tasks=1)
    load_actor(agent.learner.policy, agent.policy, {k: v[0] for k, v in params.items()})
    buffer = rollout_buffer(agent.learner.policy, episodes, gamma=0.99, gae_lambda=0.95)
    steps = TINY.episodes_per_task * HORIZON  # the budget of one adaptation step
    assert buffer.buffer_size == steps == int(episodes.masks.sum()) and buffer.full
    np.testing.assert_array_equal(
        buffer.episode_starts[:, 0], np.tile(np.eye(1, HORIZON)[0], TINY.episodes_per_task)
    )
    np.testing.assert_allclose(
        buffer.log_probs[:, 0], episodes.log_probs.flatten().numpy(), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(buffer.rewards[:, 0], episodes.rewards.flatten().numpy())
    # The end of each episode is terminal: the last advantage is the reward minus the value.
    last = steps - 1
    assert buffer.advantages[last, 0] == pytest.approx(
        buffer.rewards[last, 0] - buffer.values[last, 0], abs=1e-5
    )


def test_actor_layer_mismatch_is_refused(scratch: RunParts) -> None:
    other = GaussianMLPPolicy(scratch.agent.policy.obs_dim, 2, hidden_sizes=(8, 8))
    with pytest.raises(ValueError, match="do not match"):
        load_actor(scratch.agent.learner.policy, other, other.meta_parameters())


def test_adapt_is_ppo_per_task_and_keeps_the_template(scratch: RunParts) -> None:
    agent = scratch.agent
    assert agent.num_inner_steps == 0
    before = agent.state_dict()
    episodes = sample(scratch)
    adapted = agent.adapt(episodes).params
    again = agent.adapt(episodes).params
    for name, meta in agent.policy.meta_parameters().items():
        assert adapted[name].shape == (2, *meta.shape)
        assert not torch.equal(adapted[name][0], adapted[name][1])  # each task its own update
        torch.testing.assert_close(again[name], adapted[name], rtol=0, atol=0)  # deterministic
    after = agent.state_dict()
    for key in ("policy", "sb3_policy"):
        for name, value in before[key].items():
            torch.testing.assert_close(after[key][name], value, rtol=0, atol=0)
    assert agent.meta_update(MetaBatch(train=[], valid=episodes)) == {}


def test_a_second_step_continues_each_tasks_ppo_run_from_the_state(scratch: RunParts) -> None:
    """Two steps through the state are two PPO updates of one run per task, done by hand here."""
    agent = scratch.agent
    rounds = [sample(scratch, seed=1)]
    first = agent.adapt(rounds[0])
    rounds.append(sample(scratch, first.params, seed=2))
    continued = agent.adapt(rounds[1], first)

    learner, config = agent.learner.policy, agent.config
    template = copy.deepcopy((learner.state_dict(), learner.optimizer.state_dict()))

    def restore_template() -> None:
        learner.load_state_dict(template[0])
        learner.optimizer.load_state_dict(copy.deepcopy(template[1]))

    for task in range(2):
        restore_template()
        for episodes in rounds:  # one run: its critic and Adam moments go on to the second step
            task_episodes = episodes.task(task)
            agent.learner.rollout_buffer = rollout_buffer(
                learner, task_episodes, config.gamma, config.gae_lambda
            )
            with isolated_rng(episodes_seed(task_episodes)):
                agent.learner.train()
        for name, value in actor_params(learner, agent.policy).items():
            torch.testing.assert_close(continued.params[name][task], value, rtol=0, atol=0)
        for name, value in learner.state_dict().items():
            torch.testing.assert_close(continued.state[task].policy[name], value, rtol=0, atol=0)
    restore_template()

    # The state is passed back, never changed: the same step again gives the same result; without
    # it, each task's run starts again from the template (a fresh critic and Adam).
    again = agent.adapt(rounds[1], first)
    restarted = agent.adapt(rounds[1], Adaptation(first.params, None))
    for name, value in continued.params.items():
        torch.testing.assert_close(again.params[name], value, rtol=0, atol=0)
        assert not torch.equal(restarted.params[name], value)


def resampling_env_fn(**kwargs):
    return functools.partial(envs.make, "PointNav2D", horizon=HORIZON, **kwargs)


def test_multitask_env_draws_a_train_task_every_reset() -> None:
    env = make_multitask_env(resampling_env_fn(resample_tasks=True), envs.get_family("PointNav2D"))
    tasks = [env.reset(seed=5 if episode == 0 else None)[1]["task"] for episode in range(4)]
    assert len(set(tasks)) == 4 and all(task.split == "train" for task in tasks)
    assert env.reset(seed=5)[1]["task"] == tasks[0]  # seeded: the same task sequence


def test_multitask_env_refuses_envs_that_would_not_draw_train_tasks() -> None:
    family = envs.get_family("PointNav2D")
    for kwargs in ({}, {"resample_tasks": True, "task_split": "test"}):
        with pytest.raises(ValueError, match="PointNav2D that draw a train task at every reset"):
            make_multitask_env(resampling_env_fn(**kwargs), family)
    with pytest.raises(ValueError, match="got an env of family Reach"):
        make_multitask_env(functools.partial(envs.make, "Reach", resample_tasks=True), family)


def test_multitask_env_passes_sb3_check_and_ends_at_the_horizon() -> None:
    env = make_multitask_env(resampling_env_fn(resample_tasks=True), envs.get_family("PointNav2D"))
    check_env(env)
    env.reset(seed=0)
    for step in range(1, HORIZON + 1):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated and truncated == (step == HORIZON)


def test_multitask_budget_matches_the_meta_learner_in_whole_rollouts() -> None:
    parts = multitask_parts(matched_inner_steps=2)
    agent = parts.agent
    assert isinstance(agent, PPOMultiTask)
    valid = sample(parts, tasks=3)
    per_iteration = 3 * 3 * TINY.episodes_per_task * HORIZON  # (k + 1) x N x E x T = 180
    rollout = 16 * 2
    taken = []
    for iteration in range(1, 4):
        metrics = agent.meta_update(MetaBatch(train=[], valid=valid))
        assert metrics["pretrain/budget"] == iteration * per_iteration
        assert 0 <= metrics["pretrain/env_steps"] - iteration * per_iteration < rollout
        assert metrics["pretrain/env_steps"] % rollout == 0
        taken.append(metrics["pretrain/env_steps"])
    assert taken == [192, 384, 544]
    # The environments really took those steps, no more (SB3's Monitor counts them).
    monitors = agent.learner.get_env().envs  # type: ignore[union-attr]
    assert sum(m.get_total_steps() for m in monitors) == taken[-1]
    parts.close()

    fixed = multitask_parts(pretrain_steps=100)
    metrics = fixed.agent.meta_update(MetaBatch(train=[], valid=valid))
    assert metrics["pretrain/budget"] == 100 and metrics["pretrain/env_steps"] == 128
    fixed.close()


def test_multitask_pretraining_moves_the_policy_and_resumes_exactly(tmp_path) -> None:
    parts = multitask_parts()
    agent = parts.agent
    valid = sample(parts)
    batch = MetaBatch(train=[], valid=valid)
    start = {k: v.detach().clone() for k, v in agent.policy.meta_parameters().items()}
    agent.meta_update(batch)
    assert not torch.equal(agent.policy.meta_parameters()["log_std"], start["log_std"])
    save_checkpoint(tmp_path / "state.pt", {"agent": agent.state_dict()})

    resumed = multitask_parts()
    resumed.agent.load_state_dict(load_checkpoint(tmp_path / "state.pt")["agent"])
    for run in (agent, resumed.agent):
        run.meta_update(batch)
    expected, got = agent.state_dict(), resumed.agent.state_dict()
    assert got["updates"] == expected["updates"] == 2
    for key in ("policy", "sb3_policy"):
        for name, value in expected[key].items():
            torch.testing.assert_close(got[key][name], value, rtol=0, atol=0)
    parts.close()
    resumed.close()


def test_an_update_with_nothing_to_learn_reports_only_finite_metrics() -> None:
    parts = multitask_parts(pretrain_steps=1)
    batch = MetaBatch(train=[], valid=sample(parts))
    first, second = parts.agent.meta_update(batch), parts.agent.meta_update(batch)
    assert first["pretrain/env_steps"] == second["pretrain/env_steps"] == 32
    assert "pretrain/episode_return" in first and "pretrain/episode_return" not in second
    assert all(np.isfinite(value) for value in (*first.values(), *second.values()))
    parts.close()


def test_state_loaded_before_the_environments_waits_for_them(scratch: RunParts) -> None:
    """As the Ray backend's actors rebuild an agent: from its state alone, no environments."""
    state = scratch.agent.state_dict()
    policy = GaussianMLPPolicy(scratch.agent.policy.obs_dim, 2, hidden_sizes=TINY.hidden_sizes)
    agent = PPOScratch(policy)
    agent.load_state_dict(state)
    assert agent.state_dict()["sb3_policy"] is state["sb3_policy"]
    agent.use_environments(
        resampling_env_fn(resample_tasks=True), scratch.family, seed=999
    )  # another critic init: replaced
    for name, value in state["sb3_policy"].items():
        torch.testing.assert_close(agent.learner.policy.state_dict()[name], value, rtol=0, atol=0)


def test_isolated_rng_leaves_global_generators_as_they_were() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with isolated_rng(123):
        seeded = torch.rand(3)
    with isolated_rng(123):
        torch.testing.assert_close(torch.rand(3), seeded)
    torch.testing.assert_close(torch.rand(3), expected)


def test_baselines_need_environments_and_valid_configs() -> None:
    policy = GaussianMLPPolicy(4, 2, hidden_sizes=(8,))
    with pytest.raises(RuntimeError, match="use_environments"):
        PPOScratch(policy).state_dict()
    with pytest.raises(ValueError, match="batch_size=1"):
        AGENTS["ppo-multitask"].config_class(batch_size=1)
    with pytest.raises(ValueError, match="n_envs=0"):
        AGENTS["ppo-multitask"].config_class(n_envs=0)


def test_checkpoint_zero_of_ppo_scratch_is_every_agents_initial_policy() -> None:
    config = resolve(replace(TINY, agent="ppo-scratch"))
    scratch, maml = build(config), build(resolve(RunConfig(**{**vars(config), "agent": "maml"})))
    for name, value in maml.agent.policy.state_dict().items():
        torch.testing.assert_close(scratch.agent.policy.state_dict()[name], value, rtol=0, atol=0)
    scratch.close()
    maml.close()
