"""The no-model sketch on a map of planted shapes: points in their cluster's hue, titles on their clusters."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.render.sketch import NOISE, PALETTE, Sketch, _darken, draw_sketch, label_anchor
from tests.helpers.shaped_map import SHAPES, ShapedMap, shaped_map
from vista_tui.mapdata import MapReader

SIZE = (640, 480)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> ShapedMap:
    return shaped_map(tmp_path_factory.mktemp("maps") / "shapes")


def canvas_points(sketch: Sketch, reader: MapReader, rows: np.ndarray) -> np.ndarray:
    """Where the rows' dots are drawn, in pixels."""
    x, y = sketch.plot.to_canvas(reader.layout[rows, 0].astype(np.float64), reader.layout[rows, 1].astype(np.float64))
    return np.column_stack([x, y])


def under_a_title(sketch: Sketch, point: np.ndarray, pad: float = 2.0) -> bool:
    """The point lies under (or just beside) a title's box."""
    return any(b[0] - pad <= point[0] <= b[2] + pad and b[1] - pad <= point[1] <= b[3] + pad for b in [
        label.box for label in sketch.labels
    ])  # fmt: skip


def hue_share(sketch: Sketch, points: np.ndarray, *colours: tuple[int, int, int]) -> float:
    """The share of the dots (those no title covers) whose centre pixel is exactly one of `colours`."""
    pixels = np.asarray(sketch.image)
    visible = [p for p in points if not under_a_title(sketch, p)]
    assert len(visible) >= len(points) // 2, "the titles cover most of the shape"
    hits = [tuple(int(c) for c in pixels[round(p[1]), round(p[0])]) in colours for p in visible]
    return sum(hits) / len(hits)


def test_each_top_level_cluster_in_its_own_hue_and_noise_grey(shapes: ShapedMap) -> None:
    reader = MapReader(shapes.path)
    sketch = draw_sketch(reader, None, SIZE)
    for index, shape in enumerate(SHAPES):  # largest first: the palette's order
        assert hue_share(sketch, canvas_points(sketch, reader, shapes.rows[shape]), PALETTE[index]) > 0.9, shape
    assert hue_share(sketch, canvas_points(sketch, reader, shapes.rows["noise"]), NOISE) > 0.9


def test_each_title_sits_on_its_clusters_points_inside_the_picture(shapes: ShapedMap) -> None:
    reader = MapReader(shapes.path)
    sketch = draw_sketch(reader, None, SIZE)
    by_title = {label.text: label for label in sketch.labels}
    assert set(by_title) == {f"{shape}, shape" for shape in SHAPES}
    width, height = SIZE
    boxes = [label.box for label in sketch.labels]
    for shape in SHAPES:
        label = by_title[f"{shape}, shape"]
        points = canvas_points(sketch, reader, shapes.rows[shape])
        # the anchor is one of the cluster's own dots, so inside its bounding box …
        assert np.hypot(*(points - label.anchor).T).min() < 0.5, shape
        low, high = points.min(axis=0), points.max(axis=0)
        assert (low <= label.anchor).all() and (label.anchor <= high).all(), shape
        # … and the title covers it or stands beside it (within half its width), inside the picture
        x0, y0, x1, y1 = label.box
        assert x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height, (shape, label.box)
        ax, ay = label.anchor
        assert np.hypot(max(x0 - ax, 0, ax - x1), max(y0 - ay, 0, ay - y1)) <= (x1 - x0) / 2, (shape, label.box)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    # what the planted shapes are for: a title at the centroid would sit on none of the ring's or lobes' dots
    for shape in ("ring", "lobes"):
        node = next(n for n in reader.children(reader.root.node_id) if n.labels.keywords[0] == shape)
        centroid = np.array(sketch.plot.to_canvas(*node.centroid))
        assert np.hypot(*(canvas_points(sketch, reader, shapes.rows[shape]) - centroid).T).min() > 20


def test_a_selected_node_shows_its_sub_clusters_in_their_hues(shapes: ShapedMap) -> None:
    reader = MapReader(shapes.path)
    lobes = next(n for n in reader.children(reader.root.node_id) if n.labels.keywords[0] == "lobes")
    sketch = draw_sketch(reader, lobes.node_id, SIZE)
    for index, child in enumerate(("lobe-a", "lobe-b")):  # 36 and 28 contexts: largest first
        hues = (PALETTE[index], _darken(PALETTE[index], 0.55))  # a member's dot, or the outline of its neighbour's
        assert hue_share(sketch, canvas_points(sketch, reader, shapes.rows[child]), *hues) > 0.9, child
        label = next(label for label in sketch.labels if label.text == f"{child}, shape")
        assert np.hypot(*(canvas_points(sketch, reader, shapes.rows[child]) - label.anchor).T).min() < 0.5


def test_label_anchor_is_the_densest_point() -> None:
    sparse = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    dense = np.array([[50.0, 50.0], [51.0, 50.0], [50.0, 51.0], [52.0, 52.0]])
    assert label_anchor(np.concatenate([sparse, dense]), cell=5.0) in {tuple(p) for p in dense.tolist()}
    assert label_anchor(np.empty((0, 2)), cell=5.0) is None
    assert label_anchor(np.array([[np.nan, 1.0], [3.0, 4.0]]), cell=5.0) == (3.0, 4.0)
