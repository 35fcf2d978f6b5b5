import numpy as np
import pytest

from instrument_seg.cues.anchors import cue_combinations, make_anchors
from instrument_seg.errors import InputError


class TestAnchors:
    cues = {
        "color": np.array([[0.5, 1.0]], np.float32),
        "objectness": np.array([[0.5, 0.0]], np.float32),
        "location": np.array([[0.8, 0.2]], np.float32),
    }

    def test_products_of_all_cues(self):
        a_pos, a_neg = make_anchors(self.cues)
        np.testing.assert_allclose(a_pos, [[0.5 * 0.5 * 0.8, 0.0]])
        np.testing.assert_allclose(a_neg, [[0.5 * 0.5 * 0.2, 0.0]], atol=1e-7)

    def test_subset(self):
        a_pos, a_neg = make_anchors(self.cues, ["location", "color"])
        np.testing.assert_allclose(a_pos, [[0.4, 0.2]])
        np.testing.assert_allclose(a_neg, [[0.1, 0.0]], atol=1e-7)

    def test_single_cue_is_the_cue(self):
        a_pos, a_neg = make_anchors(self.cues, ["objectness"])
        np.testing.assert_allclose(a_pos, self.cues["objectness"])
        np.testing.assert_allclose(1 - a_neg, self.cues["objectness"])

    def test_every_combination(self):
        combos = cue_combinations()
        assert len(combos) == 7 and combos[0] == ("color",)
        assert combos[-1] == ("color", "objectness", "location")

    def test_bad_names_and_shapes(self):
        with pytest.raises(InputError, match="unknown cue 'edges'"):
            make_anchors(self.cues, ["edges"])
        with pytest.raises(InputError, match="at least one cue"):
            make_anchors(self.cues, [])
        with pytest.raises(InputError, match="differ in shape"):
            make_anchors(
                {"color": np.zeros((2, 2)), "location": np.zeros((3, 3))}, ["color", "location"]
            )
