"""``make_sampler``: backends by name, and the one list of their names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import metarobot.sampling
from metarobot.policies import GaussianMLPPolicy
from metarobot.run.config import RunConfig
from metarobot.sampling import (
    SAMPLER_BACKENDS,
    LocalSampler,
    ProcessEnvSampler,
    ProcessSliceSampler,
    make_sampler,
)
from tests.metarobot.sampling.tiny import TASKS, TinyEnv, make_policy, task_params


def test_make_sampler_rejects_unknown_backend(policy: GaussianMLPPolicy) -> None:
    assert SAMPLER_BACKENDS == ("local", "process", "ray")
    with pytest.raises(ValueError, match=r"unknown sampler backend 'dask'.*local, process, ray"):
        make_sampler("dask", TinyEnv, policy, workers=1)
    with pytest.raises(ValueError, match="workers must be 1"):
        make_sampler("local", TinyEnv, policy, workers=2)
    with make_sampler("local", TinyEnv, policy) as sampler:
        assert isinstance(sampler, LocalSampler)
    # A CPU policy runs in the workers, next to the environments (for CUDA, see below).
    with make_sampler("process", TinyEnv, policy, workers=2) as sampler:
        assert isinstance(sampler, ProcessSliceSampler)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_process_backend_runs_a_cuda_policy_on_the_driver() -> None:
    policy = make_policy().cuda()
    with make_sampler("process", TinyEnv, policy, workers=2) as sampler:
        assert isinstance(sampler, ProcessEnvSampler)
        params = {name: value.cuda() for name, value in task_params(make_policy(), 4).items()}
        episodes = sampler.sample(TASKS, params, episodes_per_task=2, seed=0)
    assert episodes.observations.is_cuda and episodes.masks.sum() > 0


def test_runs_and_the_command_line_take_the_list_without_loading_the_samplers() -> None:
    """``metarobot --help`` builds every parser, ``--backend``'s choices included: importing
    the list must not import torch (the samplers' names load on first use instead)."""
    code = (
        "import sys, metarobot.cli.train, metarobot.run.config; "
        "print(sorted({'torch', 'gymnasium'} & set(sys.modules)))"
    )
    root = Path(__file__).resolve().parents[3]
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"
    with pytest.raises(ValueError, match=r"backend='dask' \(must be one of \('local', 'process'"):
        RunConfig(backend="dask")
    with pytest.raises(AttributeError, match="has no attribute 'ProcessSampler'"):
        metarobot.sampling.ProcessSampler  # noqa: B018 (the old name is gone)
