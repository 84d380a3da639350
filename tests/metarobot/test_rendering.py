"""Rendering: grid layout, labels, writers, task selection, goal markers, filmed adaptation."""

import dataclasses
import gc
import json
import math
import os

import imageio.v3 as iio
import numpy as np
import pytest

import envs
import metarobot.rendering.headless as headless
import metarobot.run.training as training
from envs.scene import View
from metarobot.rendering.compose import (
    BACKGROUND,
    GridLayout,
    PanelLabel,
    compose,
    contact_sheet,
    key_frame_indices,
)
from metarobot.rendering.output import write_png, write_video
from metarobot.rendering.rollouts import render_rollouts
from metarobot.rendering.scene import Stage
from metarobot.rendering.selection import select_task
from metarobot.run.directory import load_run
from tests.metarobot.run.test_training import TINY

NAV = envs.get_family("PointNav2D")


def red_mask(image: np.ndarray) -> np.ndarray:
    """Pixels of the goal colour (red, or red blended with the floor)."""
    r, g, b = (image[..., c].astype(int) for c in range(3))
    return (r > 150) & (r - g > 80) & (r - b > 80)


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([rows.mean(), cols.mean()])


def project(env, camera: str, point: np.ndarray, width: int, height: int) -> np.ndarray:
    """(row, col) of a world point in a fixed camera's image (MuJoCo cameras look along -z)."""
    cam = env.model.camera(camera).id
    rotation = env.data.cam_xmat[cam].reshape(3, 3)
    x, y, z = rotation.T @ (point - env.data.cam_xpos[cam])
    focal = (height / 2) / math.tan(math.radians(env.model.cam_fovy[cam]) / 2)
    return np.array([height / 2 - focal * y / -z, width / 2 + focal * x / -z])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("render") / "run"
    training.train(TINY, run_dir, progress=False).close()
    return run_dir


@pytest.fixture()
def parts(tiny_run):
    loaded, _ = load_run(tiny_run)
    yield loaded
    loaded.close()


# Layout and labels -------------------------------------------------------------------------


def test_layout_puts_up_to_four_panels_side_by_side_then_a_grid():
    three = GridLayout.for_panels(3, 96, 72)
    assert (three.rows, three.columns) == (1, 3)
    five = GridLayout.for_panels(5, 96, 72)
    assert (five.rows, five.columns) == (2, 3)
    height, width = five.shape
    assert height % 2 == 0 and width % 2 == 0
    assert height >= 2 * (five.band + 72) and width >= 3 * 96
    rows, cols = five.scene_box(4)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (72, 96)
    assert rows.start > five.scene_box(0)[0].start and cols.start > five.scene_box(0)[1].start
    with pytest.raises(IndexError):
        five.origin(5)


def test_compose_places_scene_images_under_their_labels():
    layout = GridLayout.for_panels(2, 96, 72)
    images = [np.full((72, 96, 3), value, np.uint8) for value in (60, 200)]
    labels = [PanelLabel("adapt step 0 | t 3/10 | return -1.0", "goal (+0.10, -0.20)", True)] * 2
    frame = compose(layout, images, labels)
    assert frame.shape == (*layout.shape, 3)
    for panel, value in enumerate((60, 200)):
        assert (frame[layout.scene_box(panel)] == value).all()
        top, left = layout.origin(panel)
        band = frame[top : top + layout.band, left : left + layout.width]
        assert (band != BACKGROUND).any(axis=-1).mean() > 0.02  # text was drawn
    with pytest.raises(ValueError, match="expected"):
        compose(layout, [images[0], images[0][:10]], labels)


def test_key_frames_span_the_video_and_sheets_stack_them():
    assert key_frame_indices(11, 3) == [0, 5, 10]
    assert key_frame_indices(11, 1) == [10]
    assert key_frame_indices(2, 6) == [0, 1]
    frames = [np.full((8, 6, 3), i, np.uint8) for i in range(3)]
    sheet = contact_sheet(frames)
    assert sheet.shape[1] == 6 and sheet.shape[0] > 3 * 8
    assert (sheet[:8] == 0).all() and (sheet[-8:] == 2).all()


# Writers -----------------------------------------------------------------------------------


def moving_square(num_frames: int = 7) -> list[np.ndarray]:
    frames = []
    for t in range(num_frames):
        frame = np.zeros((72, 96, 3), np.uint8)
        frame[20:40, 10 * t : 10 * t + 20] = (255, 255, 255)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("suffix", ["mp4", "gif"])
def test_videos_round_trip_frame_count_and_size(tmp_path, suffix):
    path = write_video(moving_square(), tmp_path / f"clip.{suffix}", fps=10)
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (7, 72, 96)
    assert not np.array_equal(frames[0], frames[-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"clip.{suffix}"]


def test_failed_writes_leave_no_file(tmp_path):
    def broken():
        yield moving_square(1)[0]
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError, match="renderer died"):
        write_video(broken(), tmp_path / "clip.mp4", fps=10)
    with pytest.raises(ValueError, match="valid formats: mp4, gif"):
        write_video(moving_square(), tmp_path / "clip.avi", fps=10)
    with pytest.raises(ValueError, match=r"does not end in \.gif"):
        write_video(moving_square(), tmp_path / "clip.mp4", fps=10, fmt="gif")
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "clip.mp4", fps=10)
    assert list(tmp_path.iterdir()) == []
    write_png(moving_square(1)[0], tmp_path / "still.png")
    assert iio.imread(tmp_path / "still.png").shape == (72, 96, 3)


# Task selection ----------------------------------------------------------------------------


def test_task_ids_match_the_evaluation_draw():
    assert select_task(NAV, "test:7", seed=1000) == NAV.sample_tasks(40, "test", seed=1000)[7]
    assert select_task(NAV, "train:3", seed=5) == NAV.sample_tasks(4, "train", seed=5)[3]
    fixed = envs.get_family("HalfCheetahDir")
    assert select_task(fixed, "test:1", 1000, draw=40) == fixed.sample_tasks(40, "test", 1000)[1]
    random_task = select_task(NAV, "random", seed=0)
    assert random_task.split == "test" and random_task.index == -1


def test_json_tasks_as_records_or_bare_parameters():
    task = NAV.sample_tasks(1, "test", seed=0)[0]
    assert select_task(NAV, task.to_json(), seed=0) == task
    bare = select_task(NAV, json.dumps({"goal": [0.3, 0.2]}), seed=0)
    assert bare.vector("goal").tolist() == [0.3, 0.2] and bare.index == -1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tset:1", "invalid task 'tset:1'"),
        ("test:-1", "invalid task"),
        ("test:x", "invalid task"),
        ("{goal: 1}", "not valid JSON"),
        ('{"family": "AntGoal", "split": "test", "index": 0, "params": {}}', "AntGoal"),
        ('{"goal": [3.0, 0.0]}', "out of range"),
        ('{"velocity": 1.0}', "takes parameters"),
    ],
)
def test_bad_task_specs_say_what_is_valid(spec, message):
    with pytest.raises(ValueError, match=message):
        select_task(NAV, spec, seed=0)


# Scenes: goal markers and cameras ----------------------------------------------------------


def goal_centroid(family: str, goal: tuple[float, float], width: int, height: int):
    stage = Stage(family, envs.get_family(family).make_task(goal=goal), width, height)
    try:
        stage.reset(seed=0)
        frame = stage.render()
        expected = project(stage.env, "top", np.array([*goal, 0.0]), width, height)
        return frame, expected
    finally:
        stage.close()


def test_point_nav_goal_appears_where_the_top_camera_projects_it():
    found = []
    for goal in [(0.3, 0.2), (-0.35, -0.1)]:
        frame, expected = goal_centroid("PointNav2D", goal, 160, 120)
        mask = red_mask(frame)
        assert mask.sum() > 20
        np.testing.assert_allclose(centroid(mask), expected, atol=2.0)
        found.append(centroid(mask))
    assert np.linalg.norm(found[0] - found[1]) > 20


def test_ant_goal_marker_is_drawn_into_the_scene_and_follows_the_goal():
    family = envs.get_family("AntGoal")
    stage = Stage("AntGoal", family.make_task(goal=(1.5, -1.0)), 160, 120)
    try:
        stage.reset(seed=0)
        first = centroid(red_mask(stage.render()))
        stage.task = family.make_task(goal=(-1.5, 1.0))
        stage.env.set_task(stage.task)
        second = red_mask(stage.render())
        stage.scene = dataclasses.replace(stage.scene, markers=lambda task, torso: [])
        undecorated = red_mask(stage.render())
    finally:
        stage.close()
    assert second.sum() > 20 and undecorated.sum() == 0
    assert np.linalg.norm(first - centroid(second)) > 20


@pytest.mark.parametrize("family_name", list(envs.FAMILIES))
def test_every_family_is_filmed_with_the_robot_in_view(family_name):
    task = envs.get_family(family_name).sample_tasks(1, "test", seed=0)[0]
    stage = Stage(family_name, task, 96, 72)
    try:
        stage.reset(seed=0)
        first = stage.render()
        for _ in range(5):
            stage.env.step(stage.env.action_space.sample())
        later = stage.render()
        assert stage.caption({})
    finally:
        stage.close()
    assert first.shape == (72, 96, 3) and first.std() > 10
    assert not np.array_equal(first, later)


def test_a_fixed_lookat_holds_the_free_camera_still_while_the_robot_moves():
    task = envs.get_family("AntGoal").sample_tasks(1, "test", seed=0)[0]
    stage = Stage("AntGoal", task, 64, 48)
    try:
        camera = stage.env.mujoco_renderer._get_viewer(render_mode="rgb_array").cam
        stage.reset(seed=0)
        followed = []
        for view in [stage.scene.view, View(lookat=(0.5, -0.5, 0.2), distance=3.0)]:
            stage.scene = dataclasses.replace(stage.scene, view=view)
            looks = []
            for _ in range(3):
                stage.render()
                looks.append(np.array(camera.lookat))
                for _ in range(10):
                    stage.env.step(np.ones(stage.env.action_space.shape))
            followed.append(looks)
    finally:
        stage.close()
    assert not np.allclose(followed[0][0], followed[0][-1])  # the default view follows the torso
    for look in followed[1]:
        np.testing.assert_allclose(look, (0.5, -0.5, 0.2))


def test_closing_a_stage_leaves_later_stages_rendering():
    task = NAV.sample_tasks(1, "test", seed=0)[0]
    old = Stage("PointNav2D", task, 64, 48)
    old.reset(seed=0)
    old.render()
    old.close()
    new = Stage("PointNav2D", task, 64, 48)
    new.reset(seed=0)
    new.render()
    del old
    gc.collect()  # frees what Gymnasium's close left behind, while `new` is current
    try:
        assert new.render().std() > 10
    finally:
        new.close()


# Filming adaptation ------------------------------------------------------------------------


def test_render_rollouts_films_each_requested_step(parts):
    task = select_task(parts.family, "test:2", seed=1000)
    video = render_rollouts(parts, task, [3, 0, 1, 1], seed=1000, width=96, height=72)
    assert [r.adapt_step for r in video.rollouts] == [0, 1, 3]
    assert len(video) == TINY.horizon + 1
    frames = np.stack(list(video))
    assert frames.shape == (TINY.horizon + 1, *video.layout.shape, 3)
    assert not np.array_equal(frames[0], frames[-1])
    for rollout in video.rollouts:
        assert rollout.images.shape == (TINY.horizon + 1, 72, 96, 3)
        assert rollout.success is not None and rollout.success.shape == (TINY.horizon + 1,)
    # Every panel starts from the same reset: adaptation is the only difference.
    assert np.array_equal(video.rollouts[0].images[0], video.rollouts[2].images[0])
    assert video.rollouts[0].label(0).title.startswith("adapt step 0 | t 0/10")


def test_render_rollouts_is_reproducible_and_deterministic_mode_uses_the_mean(parts):
    task = select_task(parts.family, "test:0", seed=1000)
    first = render_rollouts(parts, task, [0], seed=7, width=64, height=48)
    again = render_rollouts(parts, task, [0], seed=7, width=64, height=48)
    mean = render_rollouts(parts, task, [0], seed=7, width=64, height=48, deterministic=True)
    np.testing.assert_array_equal(first.rollouts[0].rewards, again.rollouts[0].rewards)
    assert not np.array_equal(first.rollouts[0].rewards, mean.rollouts[0].rewards)


def test_render_rollouts_rejects_bad_requests(parts):
    task = select_task(parts.family, "test:0", seed=1000)
    with pytest.raises(ValueError, match="non-negative"):
        render_rollouts(parts, task, [-1], seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        render_rollouts(parts, task, [], seed=0)
    with pytest.raises(ValueError, match="rollouts"):
        render_rollouts(parts, task, [0], seed=0, rollouts=0)
    ant_task = envs.get_family("AntGoal").sample_tasks(1, "test", seed=0)[0]
    with pytest.raises(ValueError, match="AntGoal"):
        render_rollouts(parts, ant_task, [0], seed=0)


# Headless OpenGL ---------------------------------------------------------------------------


@pytest.fixture()
def fresh_gl_choice(monkeypatch):
    headless.setup_headless_gl.cache_clear()
    yield monkeypatch
    headless.setup_headless_gl.cache_clear()


def test_headless_setup_prefers_egl_then_osmesa(fresh_gl_choice):
    fresh_gl_choice.delenv("MUJOCO_GL", raising=False)
    fresh_gl_choice.setattr(headless, "backend_works", lambda backend: backend == "osmesa")
    assert headless.setup_headless_gl() == "osmesa"
    assert os.environ["MUJOCO_GL"] == "osmesa"


def test_headless_setup_says_what_to_install(fresh_gl_choice):
    fresh_gl_choice.delenv("MUJOCO_GL", raising=False)
    fresh_gl_choice.setattr(headless, "backend_works", lambda backend: False)
    with pytest.raises(headless.HeadlessGLError, match=r"(?s)libegl1.*libosmesa6"):
        headless.setup_headless_gl()
    fresh_gl_choice.setenv("MUJOCO_GL", "egl")
    headless.setup_headless_gl.cache_clear()
    with pytest.raises(headless.HeadlessGLError, match="MUJOCO_GL=egl"):
        headless.setup_headless_gl()


def test_headless_setup_trusts_other_backends_and_probes_for_real(fresh_gl_choice):
    fresh_gl_choice.setenv("MUJOCO_GL", "glfw")
    assert headless.setup_headless_gl() == "glfw"
    assert not headless.backend_works("no-such-backend")
