"""Multi-task weighting: hand-computed GDWA/DWA updates, fallbacks, uncertainty loss, state, gradients."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from ssvif_ros.train.weighting import (
    WEIGHTING_NAMES,
    DWAWeighting,
    FixedWeighting,
    GDWAWeighting,
    TaskWeighting,
    UncertaintyWeighting,
    create_weighting,
    projection_coefficient,
    softmax_over_tasks,
    task_grad_norms,
    task_gradients,
)

# Two epochs of Stage II: epoch-mean losses and gradient norms (fusion dominates the shared parameters).
LOSSES = [{"fusion": 10.0, "csc": 2.0}, {"fusion": 8.0, "csc": 1.8}]
GRADS = [{"fusion": 3.0, "csc": 1.0}, {"fusion": 4.0, "csc": 0.5}]


def _run(weighting, n: int = 2) -> None:
    for losses, grads in zip(LOSSES[:n], GRADS[:n], strict=True):
        weighting.end_epoch(losses, grads if weighting.needs_grad_norms else None)


def test_gdwa_matches_hand_computation() -> None:
    gdwa = GDWAWeighting(temperature=2.0)
    _run(gdwa)

    # By hand, step by step, from the formula in the module docstring.
    r_fus, r_csc = 8.0 / 10.0, 1.8 / 2.0
    g_fus, g_csc = 4.0, 0.5
    g_mean = (g_fus + g_csc) / 2
    f_fus, f_csc = g_fus / g_mean, g_csc / g_mean  # default: weight ∝ normalised gradient norm
    e_fus, e_csc = math.exp(r_fus / 2.0), math.exp(r_csc / 2.0)
    s_fus, s_csc = e_fus / (e_fus + e_csc), e_csc / (e_fus + e_csc)
    z = f_fus * s_fus + f_csc * s_csc
    lam_fus, lam_csc = 2 * f_fus * s_fus / z, 2 * f_csc * s_csc / z
    expected = lam_csc / lam_fus

    assert gdwa.weights()["fusion"] == 1.0
    assert gdwa.weights()["csc"] == pytest.approx(expected, rel=1e-12)
    # The same in closed form: (G_csc/G_fus) · exp((r_csc − r_fus)/T) = e^0.05 / 8.
    assert gdwa.weights()["csc"] == pytest.approx(math.exp(0.05) / 8.0, rel=1e-12)
    assert gdwa.diagnostics["task_weights"]["fusion"] == pytest.approx(lam_fus)
    assert gdwa.diagnostics["clamped"] is False
    # combine = L_fusion + w · L_csc
    total = gdwa.combine({"fusion": torch.tensor(2.0), "csc": torch.tensor(3.0)})
    assert total.item() == pytest.approx(2.0 + expected * 3.0, rel=1e-6)


def test_gdwa_first_epochs_fall_back() -> None:
    gdwa = GDWAWeighting(temperature=2.0, initial_w=0.2)
    assert gdwa.weights()["csc"] == 0.2  # epoch 0: no gradient norm measured yet
    gdwa.end_epoch(LOSSES[0], GRADS[0])
    # epoch 1: r undefined -> r = 1, uniform softmax: only the gradient factor acts.
    assert gdwa.diagnostics["softmax"] == {"fusion": 0.5, "csc": 0.5}
    assert gdwa.weights()["csc"] == pytest.approx(1.0 / 3.0)


def test_gdwa_gradient_normalisation_does_not_change_w_and_power_modes() -> None:
    a, b = GDWAWeighting(), GDWAWeighting()
    _run(a)
    b.end_epoch(LOSSES[0], {k: 7.0 * v for k, v in GRADS[0].items()})
    b.end_epoch(LOSSES[1], {k: 7.0 * v for k, v in GRADS[1].items()})
    assert b.weights()["csc"] == pytest.approx(a.weights()["csc"], rel=1e-12)

    # grad_power = 0 is plain DWA; -1 is the GradNorm-like reading: (G_fus/G_csc)·exp(Δr/T).
    plain = GDWAWeighting(grad_power=0.0)
    dwa = DWAWeighting()
    inverse = GDWAWeighting(grad_power=-1.0)
    _run(plain)
    _run(dwa)
    _run(inverse)
    assert plain.weights()["csc"] == pytest.approx(dwa.weights()["csc"], rel=1e-12)
    assert inverse.weights()["csc"] == pytest.approx(4.0 / 0.5 * math.exp(0.05), rel=1e-12)


def test_gdwa_temperature_limits_and_clamp() -> None:
    # T -> inf: uniform softmax, w is the gradient ratio alone.
    for temperature in (1e12, math.inf):
        gdwa = GDWAWeighting(temperature=temperature)
        _run(gdwa)
        assert gdwa.diagnostics["softmax"]["csc"] == pytest.approx(0.5, abs=1e-12)
        assert gdwa.weights()["csc"] == pytest.approx(0.5 / 4.0, rel=1e-10)
    # T -> 0: all the softmax mass on the slower-descending task.
    assert softmax_over_tasks({"fusion": 0.8, "csc": 0.9}, 1e-3)["csc"] == pytest.approx(1.0)

    gdwa = GDWAWeighting(w_max=5.0)
    gdwa.end_epoch(LOSSES[0], {"fusion": 0.0, "csc": 1.0})  # vanishing fusion gradient
    assert gdwa.weights()["csc"] == 5.0
    assert gdwa.diagnostics["clamped"] is True
    assert gdwa.diagnostics["w_unclamped"] > 5.0


def test_gdwa_needs_grad_norms_and_valid_inputs() -> None:
    gdwa = GDWAWeighting()
    assert gdwa.needs_grad_norms
    with pytest.raises(ValueError, match="task_grad_norms"):
        gdwa.end_epoch(LOSSES[0], None)
    with pytest.raises(ValueError, match="'csc'"):
        gdwa.end_epoch({"fusion": 1.0, "csc": float("nan")}, GRADS[0])
    with pytest.raises(ValueError, match="expected keys"):
        gdwa.end_epoch({"fusion": 1.0}, GRADS[0])
    with pytest.raises(ValueError, match="gradient norm"):
        gdwa.end_epoch(LOSSES[0], {"fusion": -1.0, "csc": 1.0})
    with pytest.raises(ValueError, match="temperature"):
        GDWAWeighting(temperature=0.0)


def test_dwa_matches_liu_et_al() -> None:
    dwa = DWAWeighting(temperature=2.0)
    assert dwa.weights()["csc"] == 1.0
    dwa.end_epoch(**{"epoch_losses": LOSSES[0]})
    assert dwa.weights()["csc"] == 1.0  # first two epochs: λ = 1
    dwa.end_epoch(LOSSES[1])
    # λ_k = K exp(r_k/T) / Σ_i exp(r_i/T), r_k = L_k(t-1)/L_k(t-2), K = 2.
    e_fus, e_csc = math.exp(0.8 / 2.0), math.exp(0.9 / 2.0)
    lam_fus, lam_csc = 2 * e_fus / (e_fus + e_csc), 2 * e_csc / (e_fus + e_csc)
    assert dwa.diagnostics["task_weights"]["csc"] == pytest.approx(lam_csc, rel=1e-12)
    assert sum(dwa.diagnostics["task_weights"].values()) == pytest.approx(2.0)
    assert dwa.weights()["csc"] == pytest.approx(lam_csc / lam_fus, rel=1e-12)

    scaled = DWAWeighting(base_w=0.1)
    _run(scaled)
    assert scaled.weights()["csc"] == pytest.approx(0.1 * lam_csc / lam_fus, rel=1e-12)


def test_fixed_stays_fixed() -> None:
    fixed = create_weighting("fixed")
    assert fixed.weights() == {"fusion": 1.0, "csc": 0.1}
    for losses in [*LOSSES, {"fusion": 100.0, "csc": 0.01}]:
        assert fixed.end_epoch(losses) == {"fusion": 1.0, "csc": 0.1}
    total = fixed.combine({"fusion": torch.tensor(2.0), "csc": torch.tensor(3.0)})
    assert total.item() == pytest.approx(2.3)


def test_uncertainty_combine_and_gradients() -> None:
    uw = UncertaintyWeighting()
    assert uw.weights()["csc"] == pytest.approx(1.0)  # s = 0 at the start
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.3, -0.7]))
    l_fus, l_csc = torch.tensor(2.0), torch.tensor(0.5)
    total = uw.combine({"fusion": l_fus, "csc": l_csc})
    expected = math.exp(-0.3) * 2.0 + 0.3 + math.exp(0.7) * 0.5 - 0.7
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()
    # d/ds_i [exp(-s_i) L_i + s_i] = 1 - exp(-s_i) L_i
    assert uw.log_vars.grad.tolist() == pytest.approx(
        [1 - math.exp(-0.3) * 2.0, 1 - math.exp(0.7) * 0.5], rel=1e-5
    )
    assert uw.weights()["csc"] == pytest.approx(math.exp(1.0), rel=1e-6)
    assert uw.task_weights()["fusion"] == pytest.approx(math.exp(-0.3), rel=1e-6)

    # Its parameters go to the optimizer: a step moves s and hence the effective w.
    before = uw.weights()["csc"]
    torch.optim.SGD(uw.parameters(), lr=0.1).step()
    assert uw.weights()["csc"] != pytest.approx(before)

    # Inside a container, nn.Module's own state_dict still works (tensor form).
    container = nn.ModuleDict({"weighting": uw})
    assert "weighting.log_vars" in container.state_dict()
    assert UncertaintyWeighting(initial_w=0.1).weights()["csc"] == pytest.approx(0.1, rel=1e-6)


@pytest.mark.parametrize("name", WEIGHTING_NAMES)
def test_state_round_trip_reproduces_next_update(name: str) -> None:
    cfg = {"temperature": 1.5} if name in ("dwa", "gdwa") else {}
    original = create_weighting(name, **cfg)
    assert isinstance(original, TaskWeighting)
    if name == "uncertainty":
        with torch.no_grad():
            original.log_vars.copy_(torch.tensor([0.123456789, -1.987654321]))
    _run(original)

    state = json.loads(json.dumps(original.state_dict()))
    restored = create_weighting(name, **cfg)
    restored.load_state_dict(state)
    assert restored.weights() == original.weights()

    third, grads = {"fusion": 7.1, "csc": 1.9}, {"fusion": 3.3, "csc": 0.7}
    grads_arg = grads if original.needs_grad_norms else None
    assert restored.end_epoch(third, grads_arg) == original.end_epoch(third, grads_arg)
    assert restored.state_dict() == original.state_dict()


def test_state_from_other_scheme_or_config_is_refused() -> None:
    gdwa = GDWAWeighting()
    _run(gdwa)
    with pytest.raises(ValueError, match="scheme 'gdwa'"):
        DWAWeighting().load_state_dict(gdwa.state_dict())
    with pytest.raises(ValueError, match="temperature"):
        GDWAWeighting(temperature=3.0).load_state_dict(gdwa.state_dict())


def test_create_weighting_errors() -> None:
    with pytest.raises(ValueError, match="fixed, dwa, uncertainty, gdwa"):
        create_weighting("gradnorm")
    with pytest.raises(ValueError, match="accepts: temperature"):
        create_weighting("dwa", T=2.0)
    assert isinstance(create_weighting(" GDWA ", temperature=4.0), GDWAWeighting)
    assert isinstance(create_weighting("fixed", w=0.3), FixedWeighting)


def _linear_case():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    x = torch.tensor([1.0, -2.0, 0.5])
    loss_sum = layer(x).sum()  # ∇W = [x; x], ∇b = [1, 1]
    loss_reg = 0.5 * layer.weight.pow(2).sum()  # ∇W = W, b unused
    return layer, x, {"fusion": loss_sum, "csc": loss_reg}


def test_task_grad_norms_on_linear_model() -> None:
    layer, x, losses = _linear_case()
    norms = task_grad_norms(losses, list(layer.parameters()))
    assert norms["fusion"] == pytest.approx(math.sqrt(2 * x.pow(2).sum().item() + 2), rel=1e-6)
    assert norms["csc"] == pytest.approx(layer.weight.norm().item(), rel=1e-6)

    grads = task_gradients(losses, layer.parameters())
    expected_fus = torch.cat([torch.stack([x, x]).reshape(-1), torch.ones(2)])
    expected_csc = torch.cat([layer.weight.detach().reshape(-1), torch.zeros(2)])
    assert torch.allclose(grads["fusion"], expected_fus)
    assert torch.allclose(grads["csc"], expected_csc)

    # The graph was retained: the trainer can still backward the combined loss.
    (losses["fusion"] + losses["csc"]).backward()
    assert torch.allclose(layer.bias.grad, torch.ones(2))
    # A loss that does not reach θ (detached) has zero norm.
    assert task_grad_norms({"csc": losses["csc"].detach()}, layer.parameters())["csc"] == 0.0


def test_projection_coefficient_on_hand_vectors() -> None:
    assert projection_coefficient(torch.tensor([1.0, 2.0, 0.0]), torch.tensor([2.0, 0.0, 0.0])) == 0.5
    assert projection_coefficient(torch.tensor([-3.0, 1.0]), torch.tensor([1.0, 1.0])) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="zero vector"):
        projection_coefficient(torch.tensor([1.0, 2.0]), torch.zeros(2))
    with pytest.raises(ValueError, match="elements"):
        projection_coefficient(torch.ones(3), torch.ones(2))
