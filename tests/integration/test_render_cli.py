"""``metarobot render`` end to end on a tiny trained run: files, layout, goal, errors; and the
Markdown summary of ``metarobot evaluate`` linking plots and videos."""

import json
import re
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import envs
import metarobot.run.training as training
from metarobot.cli import main
from metarobot.rendering.compose import GridLayout
from tests.metarobot.run.test_training import TINY
from tests.metarobot.test_rendering import centroid, project, red_mask

WIDTH, HEIGHT = 96, 72


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("render_cli") / "run"
    training.train(TINY, path, progress=False).close()
    return path


def copy_run(run_dir: Path, to: Path) -> Path:
    """The trained run without what other tests rendered or evaluated into it."""
    shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("videos", "eval"))
    return to


def render(run_dir: Path, *args: str) -> int:
    size = ["--width", str(WIDTH), "--height", str(HEIGHT), "--no-progress"]
    return main(["render", str(run_dir), *size, *args])


def test_mp4_has_one_labelled_panel_per_step_and_moves(run_dir, tmp_path, capsys):
    out = tmp_path / "videos" / "nav.mp4"
    assert render(run_dir, "--task", "test:7", "--adapt-steps", "0,1,3", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "after 3 adaptation steps: return" in printed and str(out) in printed
    frames = iio.imread(out, index=None)
    layout = GridLayout.for_panels(3, WIDTH, HEIGHT)
    assert frames.shape == (TINY.horizon + 1, *layout.shape, 3)
    for panel in range(3):
        top, left = layout.origin(panel)
        band = frames[0, top : top + layout.band, left : left + WIDTH].astype(int)
        scene = frames[0][layout.scene_box(panel)].astype(int)
        assert band.mean() < 90 < scene.mean()  # dark label band above a bright floor
        assert (band > 150).any()  # with light text on it
    assert not np.array_equal(frames[0], frames[-1])
    assert sorted(p.name for p in out.parent.iterdir()) == ["nav.mp4"]


def test_goal_marker_lies_where_the_camera_sees_the_goal(run_dir, tmp_path):
    env = envs.make("PointNav2D")
    env.reset(seed=0, options={"task": envs.get_family("PointNav2D").make_task(goal=(0, 0))})
    layout = GridLayout.for_panels(1, WIDTH, HEIGHT)
    found = []
    for name, goal in (("a", (0.3, 0.2)), ("b", (-0.3, -0.2))):
        out = tmp_path / f"{name}.mp4"
        task = json.dumps({"goal": list(goal)})
        assert render(run_dir, "--task", task, "--adapt-steps", "0", "--out", str(out)) == 0
        scene = iio.imread(out, index=0)[layout.scene_box(0)]
        expected = project(env, "top", np.array([*goal, 0.0]), WIDTH, HEIGHT)
        np.testing.assert_allclose(centroid(red_mask(scene)), expected, atol=2.5)
        found.append(centroid(red_mask(scene)))
    assert np.linalg.norm(found[0] - found[1]) > 15


def test_gif_and_contact_sheet(run_dir, tmp_path):
    out = tmp_path / "nav.gif"
    args = ("--task", "train:3", "--adapt-steps", "0,1", "--format", "gif", "--frames", "3")
    assert render(run_dir, *args, "--out", str(out), "--fps", "5") == 0
    layout = GridLayout.for_panels(2, WIDTH, HEIGHT)
    frames = iio.imread(out, index=None)
    assert frames.shape[:3] == (TINY.horizon + 1, *layout.shape)
    sheet = iio.imread(out.with_suffix(".png"))
    assert sheet.shape[1] == layout.shape[1] and sheet.shape[0] > 3 * layout.shape[0]


def test_default_output_goes_to_the_run_videos_folder(run_dir, capsys):
    assert render(run_dir, "--task", "random", "--adapt-steps", "1", "--format", "gif") == 0
    written = re.search(r"wrote (\S+)", capsys.readouterr().out).group(1)
    path = Path(written)
    assert path.parent == run_dir / "videos" and path.name.startswith("test_custom_steps1_iter")
    assert path.suffix == ".gif" and path.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--task", "test:seven"), "invalid task 'test:seven'"),
        (("--task", '{"family": "Nope", "params": {}}'), "task of family 'Nope'"),
        (("--adapt-steps", "0,x"), "--adapt-steps"),
        (("--format", "gif"), "does not end in .gif"),
    ],
)
def test_bad_requests_fail_clearly_and_write_nothing(run_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out" / "video.mp4"
    assert render(run_dir, *args, "--out", str(out)) == 2
    assert message in capsys.readouterr().err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_unknown_family_fails_clearly_and_writes_nothing(run_dir, tmp_path, capsys):
    broken = copy_run(run_dir, tmp_path / "broken")
    config = broken / "config.toml"
    config.write_text(config.read_text().replace('"PointNav2D"', '"Nope"'))
    assert render(broken, "--out", str(tmp_path / "video.mp4")) == 2
    assert "unknown task family 'Nope'; valid families: PointNav2D" in capsys.readouterr().err
    assert not (tmp_path / "video.mp4").exists() and not (broken / "videos").exists()


def test_evaluate_writes_markdown_linking_plot_and_videos(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    assert render(run, "--adapt-steps", "0,1", "--frames", "2") == 0
    assert main(["evaluate", str(run), "--tasks", "2", "--adapt-steps", "1"]) == 0
    (summary,) = (run / "eval").glob("*.md")
    text = summary.read_text()
    assert "| adaptation steps |" in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    targets = {(summary.parent / link).resolve() for link in links}
    assert all(not Path(link).is_absolute() and "\\" not in link for link in links)
    assert all(target.is_file() for target in targets)
    suffixes = sorted(target.suffix for target in targets)
    assert suffixes == [".csv", ".json", ".mp4", ".png", ".png"]
    assert any(target.parent.name == "videos" for target in targets)
