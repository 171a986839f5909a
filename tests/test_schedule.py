import pytest

from rexnet import schedule as sch

REXNET_100 = [16, 27, 38, 50, 61, 72, 84, 95, 106, 117, 128, 140, 151, 162, 174, 185]


def test_linear_rexnet_100_matches_original_code():
    assert sch.round_widths(sch.rexnet_widths(1.0)) == REXNET_100
    assert sch.round_widths(sch.linear(16, 16, 180)) == REXNET_100


def test_multiplier_below_one_keeps_first_width():
    w = sch.round_widths(sch.rexnet_widths(0.9))
    assert w[0] == 16
    assert w[-1] == round(16 + 15 * 180 * 0.9 / 16)
    assert sch.round_widths(sch.rexnet_widths(0.5))[0] == 16
    assert sch.round_widths(sch.linear(16, 16, 180, multiplier=0.9, keep_start_below_one=False))[0] == 14


def test_multiplier_above_one_scales_everything():
    assert sch.round_widths(sch.rexnet_widths(2.0)) == [round(2 * (16 + i * 11.25)) for i in range(16)]


def test_depth_multiplier_rounds_up_per_stage():
    assert sch.scale_depth(sch.REXNET_REPEATS, 1.0) == [1, 2, 2, 3, 3, 5]
    assert sch.scale_depth(sch.REXNET_REPEATS, 1.5) == [2, 3, 3, 5, 5, 8]
    assert len(sch.rexnet_widths(1.0, 1.5)) == 26


def test_make_divisible_ten_percent_rule():
    assert sch.make_divisible(27, 8) == 32      # 24 would lose > 10%
    assert sch.make_divisible(38, 8) == 40
    assert sch.make_divisible(3, 8) == 8        # never below the divisor
    assert sch.make_divisible(100, 8) == 104
    assert sch.round_width(83.5, "round") == 84   # Python round-half-even, as the original
    assert sch.round_width(38.5, "round") == 38
    with pytest.raises(ValueError, match="rounding rule"):
        sch.round_width(3.0, "floor")


def test_stagewise_is_mobilenetv2():
    w = sch.stagewise([(16, 1), (24, 2), (32, 3), (64, 4), (96, 3), (160, 3), (320, 1)])
    assert w == [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]


def test_piecewise_linear_covers_linear_and_stagewise():
    lin = sch.piecewise_linear(16, a=180 * 15 / 16, b=16, knots=[(0, 0), (15, 1)])
    assert lin == pytest.approx(sch.linear(16, 16, 180))
    # a step from 16 to 24 between blocks 0 and 1, then flat: stage-wise at integer indices
    stages = [(16, 1), (24, 2), (32, 3)]
    knots = [(0, 16), (1, 24), (2, 24), (3, 32), (5, 32)]
    assert sch.piecewise_linear(6, 1.0, 0.0, knots) == pytest.approx(sch.stagewise(stages))


def test_piecewise_linear_rejects_shrinking_widths():
    with pytest.raises(ValueError, match="non-decreasing"):
        sch.piecewise_linear(4, 1.0, 0.0, [(0, 2), (3, 1)])
    with pytest.raises(ValueError, match="a must be >= 0"):
        sch.piecewise_linear(4, -1.0, 0.0, [(0, 0), (3, 1)])
    with pytest.raises(ValueError, match="cover"):
        sch.piecewise_linear(6, 1.0, 0.0, [(0, 0), (3, 1)])
    with pytest.raises(ValueError, match="increasing"):
        sch.piecewise_linear(4, 1.0, 0.0, [(0, 0), (0, 1), (3, 1)])
    with pytest.raises(ValueError, match="shrink"):
        sch.linear(8, 16, -10)
