"""Mixed-precision allocation (quant/mixed.py): exact plans on a hand-worked table, the budget rules,
the plan JSON and Markdown."""

import json

import pytest

from microscopiq.quant.mixed import (ERROR_LOSS, LayerOptions, MixedError, Option, Plan, allocate, budget_bits,
                                     check_budget, plan_json, plan_markdown)


def _layer(name, weights, *options):
    """Options ``(b, bits, error)``, the loss the squared error (as for ``--weights``)."""
    return LayerOptions(name, weights, tuple(Option(b, bits, error, error ** 2) for b, bits, error in options))


#: Four layers (800 weights, all-b=2 EBW 2.5). Objective reduction per extra bit, err² differences:
#: C 2→3 0.0021, A 2→3 6.75e-4, C 3→4 3e-4, A 3→4 1.61e-4, D 2→3 6.4e-5, B 2→3 3.2e-5,
#: D 3→4 2.375e-5, B 3→4 5.5e-6: the greedy takes them in this order, each when it fits.
TABLE = (
    _layer("A", 100, (2, 250, 0.30), (3, 350, 0.15), (4, 450, 0.08)),
    _layer("B", 200, (2, 500, 0.10), (3, 700, 0.06), (4, 900, 0.05)),
    _layer("C", 100, (2, 250, 0.50), (3, 350, 0.20), (4, 450, 0.10)),
    _layer("D", 400, (2, 1000, 0.20), (3, 1400, 0.12), (4, 1800, 0.07)),
)


@pytest.mark.parametrize("budget, widths, bits", [
    (2.5, (2, 2, 2, 2), 2000),        # exactly the all-b=2 EBW: nothing more fits
    (2.75, (3, 2, 3, 2), 2200),       # C and A to 3
    (3.0, (4, 2, 4, 2), 2400),        # then C and A to 4
    (3.2, (4, 2, 4, 2), 2400),        # D 2→3 (+400) and B 2→3 (+200) do not fit 2560
    (3.3, (4, 3, 4, 2), 2600),        # D 2→3 still not; B 2→3 fits 2640: taken though second best
    (3.5, (4, 2, 4, 3), 2800),        # D 2→3 fits exactly; B 2→3 then does not
    (4.0, (4, 4, 4, 3), 3200),        # B 2→3; D 3→4 (+400) does not fit, B 3→4 (+200) fills it
    (4.5, (4, 4, 4, 4), 3600),        # everything
    (9.0, (4, 4, 4, 4), 3600),        # a budget above the widest EBW is the all-widest plan
])
def test_allocate_exact_plans(budget, widths, bits):
    plan = allocate(TABLE, budget)
    assert plan.widths == widths, f"budget {budget}: expected {widths}, got {plan.widths}"
    assert plan.bits == bits and plan.bits <= budget_bits(budget, 800)
    assert plan.ebw == bits / 800


def test_allocate_minimises_the_loss_not_the_error():
    # y's error falls more, but x's loss (say, its effect on the model's output) does.
    layers = (LayerOptions("x", 10, (Option(2, 25, 0.1, 0.5), Option(4, 45, 0.09, 0.1))),
              LayerOptions("y", 10, (Option(2, 25, 0.3, 0.2), Option(4, 45, 0.01, 0.15))))
    assert allocate(layers, 3.5).widths == (4, 2)


def test_allocate_skips_an_upgrade_that_does_not_lower_the_error():
    layers = (_layer("x", 10, (2, 25, 0.2), (4, 45, 0.2)), _layer("y", 10, (2, 25, 0.3), (4, 45, 0.1)))
    assert allocate(layers, 10.0).widths == (2, 4)


def test_allocate_ties_go_to_the_earlier_layer():
    same = ((2, 24, 0.3), (4, 42, 0.05))
    assert allocate((_layer("p", 10, *same), _layer("q", 10, *same)), 3.3).widths == (4, 2)


def test_budget_is_the_decimal_written():
    # 3.3 * 200 is 659.99... in binary floating point; the budget means 660 bits.
    assert budget_bits(3.3, 200) == 660
    layers = (_layer("a", 100, (2, 240, 0.3), (4, 420, 0.05)), _layer("b", 100, (2, 240, 0.2), (4, 420, 0.04)))
    assert allocate(layers, 3.3).widths == (4, 2)


def test_budget_below_the_cheapest_plan_is_refused():
    with pytest.raises(MixedError, match=r"^--budget 2.49 is below 2.5000 bits per weight, the mean EBW with "
                                         r"every layer at its narrowest b \(2\): no plan fits$"):
        allocate(TABLE, 2.49)


@pytest.mark.parametrize("budget, message", [
    (float("nan"), r"--budget must be a finite number of bits per weight, not nan"),
    (float("inf"), r"--budget must be a finite number of bits per weight, not inf"),
    (1.99, r"--budget 1.99 is below the narrowest --wbits 2: no plan fits"),
    (-3.0, r"--budget -3 is below the narrowest --wbits 2: no plan fits"),
])
def test_check_budget(budget, message):
    with pytest.raises(MixedError, match="^" + message):
        check_budget(budget, (4, 2))


def test_plan_json_schema():
    plan = allocate(TABLE, 3.3)
    out = plan_json(plan, method="microscopiq", files={n: f"{n}.msq" for n in "ABCD"}, objective=ERROR_LOSS)
    json.dumps(out, allow_nan=False)
    assert list(out) == ["method", "budget", "objective", "allocator", "wbits", "layers", "totals"]
    assert (out["method"], out["budget"], out["wbits"], out["objective"]) == ("microscopiq", 3.3, [2, 3, 4],
                                                                             ERROR_LOSS)
    assert [(e["layer"], e["b"], e["bits"], e["weights"], e["file"]) for e in out["layers"]] == [
        ("A", 4, 450, 100, "A.msq"), ("B", 3, 700, 200, "B.msq"), ("C", 4, 450, 100, "C.msq"),
        ("D", 2, 1000, 400, "D.msq")]
    b = out["layers"][1]
    assert list(b) == ["layer", "b", "ebw", "error", "loss", "bits", "weights", "file", "options"]
    assert (b["ebw"], b["error"], b["loss"]) == (3.5, 0.06, 0.06 ** 2)
    assert b["options"] == [{"b": 2, "ebw": 2.5, "error": 0.10, "loss": 0.10 ** 2, "bits": 500},
                            {"b": 3, "ebw": 3.5, "error": 0.06, "loss": 0.06 ** 2, "bits": 700},
                            {"b": 4, "ebw": 4.5, "error": 0.05, "loss": 0.05 ** 2, "bits": 900}]
    assert out["totals"] == {"layers": 4, "weights": 800, "bits": 2600, "ebw": 3.25, "budget_bits": 2640,
                             "objective": 0.08 ** 2 + 0.06 ** 2 + 0.10 ** 2 + 0.20 ** 2,
                             "layers_per_b": {"2": 1, "3": 1, "4": 2}}


def test_plan_markdown_rows():
    text = plan_markdown(allocate(TABLE, 3.0), method="microscopiq", objective="the loss")
    lines = text.splitlines()
    assert lines[0] == "# Mixed-precision plan: microscopiq, budget 3 bits/weight"
    assert lines[2] == ("Mean EBW 3.0000 bits/weight (2400 of 2400 bits allowed, 800 weights); objective "
                        "(the loss) 0.0664.")
    assert lines[4] == ("| layer | weights | b | EBW | rel. output error | loss | loss at b = 2 | loss at b = 3 | "
                        "loss at b = 4 |")
    assert lines[6:] == ["| A | 100 | 4 | 4.5000 | 0.0800 | 0.0064 | 0.09 | 0.0225 | 0.0064 |",
                         "| B | 200 | 2 | 2.5000 | 0.1000 | 0.01 | 0.01 | 0.0036 | 0.0025 |",
                         "| C | 100 | 4 | 4.5000 | 0.1000 | 0.01 | 0.25 | 0.04 | 0.01 |",
                         "| D | 400 | 2 | 2.5000 | 0.2000 | 0.04 | 0.04 | 0.0144 | 0.0049 |"]


def test_plan_properties():
    plan = Plan(TABLE, (2, 3, 4, 2), 3.0)
    assert [o.bits for o in plan.chosen] == [250, 700, 450, 1000]
    assert (plan.weights, plan.bits) == (800, 2400)
