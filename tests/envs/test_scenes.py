"""Each family declares how it is filmed beside its env; rendering needs no list of families."""

import envs
from envs.scene import SceneSpec, View, goal_of
from metarobot.tasks import Task

DECLARED = (
    "PointNav2D",
    "AntGoal",
    "AntDir",
    "AntVel",
    "AntFwdBack",
    "HalfCheetahVel",
    "HalfCheetahDir",
    "HopperParams",
    "Walker2dParams",
)


def test_families_declare_their_scene_or_take_the_generic_one():
    for name in envs.FAMILIES:
        scene = envs.env_class(name).scene
        assert scene is None or isinstance(scene, SceneSpec), name
        declared = name in DECLARED or name.startswith("MetaWorld")  # MetaWorldEnv.scene
        assert (scene is not None) == declared, name
    assert envs.env_class("PointNav2D").scene == SceneSpec(
        View(camera="top", shadows=False), trail_radius=0.008
    )


def test_goal_of_joins_per_axis_parameters():
    task = Task("Reach", "test", 0, (("goal_x", 0.1), ("goal_y", -0.2), ("goal_z", 0.3)))
    assert goal_of(task).tolist() == [0.1, -0.2, 0.3]
    assert goal_of(Task("HalfCheetahVel", "test", 0, (("velocity", 1.0),))) is None
