"""Multi-task loss weighting for Stage II: ``total = L_fusion + w · L_CSC``, with ``w`` set per epoch.

Schemes (``create_weighting(name, **cfg)``): ``"fixed"``, ``"dwa"``, ``"uncertainty"``, ``"gdwa"``; all share
the small :class:`TaskWeighting` interface, so the trainer does the same thing for each:

    weighting = create_weighting(cfg.name, **cfg.options)
    for epoch in stage_two_epochs:
        for batch in loader:
            total = weighting.combine({"fusion": l_fus, "csc": l_csc})      # unweighted 0-dim losses in
            if weighting.needs_grad_norms and measure_now:                  # e.g. every k-th step
                g = task_grad_norms({"fusion": l_fus, "csc": l_csc}, fusion_model_params)
            total.backward(); ...
        weighting.end_epoch(epoch_mean_losses, epoch_mean_grad_norms or None)  # sets w for next epoch

``weights()`` always reports the fusion weight normalised to 1, so ``w = weights()["csc"]`` is comparable
across schemes and the fusion loss keeps unit weight (the learning rate means the same thing in every
scheme). Only uncertainty weighting is different: its loss (Kendall et al.) scales both terms.

GDWA (SSVIF's gradient-norm and descent-rate dynamic weight averaging)
---------------------------------------------------------------------
The SSVIF text available to us (arXiv 2509.22450, abstract only) does not spell out every detail, so
here is what this module does and why. For tasks i ∈ (fusion, csc), at the start of epoch t:

1. ``G_i``: L2 norm of ∇_θ L_i over the shared parameters θ (the fusion model), of the UNWEIGHTED loss,
   averaged by the trainer over the steps of epoch t−1 where it measured it (:func:`task_grad_norms`).
   Unweighted, because ``w`` is what we are choosing: measuring ``w·L_CSC`` would feed ``w`` back into
   its own update.
2. Normalise over tasks: ``Ĝ_i = G_i / mean_j G_j``. (Dividing by the sum instead only rescales every
   task by the same constant, which cancels in step 5: the choice does not change ``w``.)
3. Gradient factor ``f_i = Ĝ_i ** grad_power`` with ``grad_power = +1`` by default: the literal recipe
   ("task weight ∝ normalised G_i × softmax_i"), which is what the project's issue specifies. It lets the
   task with the larger gradient on the shared parameters keep its share. Both ancestors of GDWA would
   rather give MORE weight to the lagging task: GradNorm (Chen et al., ICML 2018) drives the weighted
   gradient norms ``w_i·G_i`` towards their common mean, whose closed-form answer (α = 0) is
   ``w_i ∝ mean(G)/G_i``; ``grad_power=-1`` gives that reading and ``grad_power=0`` plain DWA, both
   selectable in config for the ablation.
4. Descent rate ``r_i = L_i(t−1) / L_i(t−2)`` (epoch-mean unweighted losses) and
   ``s = softmax(r / T)``, ``T = 2`` as in DWA. A slowly falling loss (r near or above 1) gets more
   weight, as in DWA. When r is undefined (the first two epochs of Stage II) ``r_i = 1``: a uniform
   softmax, so only the gradient factor acts.
5. ``λ_i = K · f_i s_i / Σ_j f_j s_j`` (K = 2; like DWA's weights they sum to K); both tasks, the fusion
   one included, are scaled by their gradient factor. ``w = base_w · λ_csc / λ_fusion``
   ``= base_w · (G_csc/G_fusion)**grad_power · exp((r_csc − r_fusion)/T)``, then clamped to
   ``[w_min, w_max]`` (default [1e-3, 10]) so a vanishing CSC gradient (e.g. both branches agreeing
   everywhere) cannot make ``w`` explode. Clamping is recorded in ``diagnostics["clamped"]``. Scale
   check: on lightunet (random init, and after 300 fusion-only steps on 64×64 toy pairs) with a fresh
   seg head, ``G_fusion/G_csc`` was 30–80, so full gradient parity would ask for w ≈ 30–80 and the
   clamp binds with ``grad_power=-1``; with the default ``+1`` the same ratio gives w ≈ 0.01–0.03.
   Watch ``diagnostics["w_unclamped"]`` in the first Stage II epochs.
6. Epoch 0 of Stage II has no measured G yet: ``w = initial_w`` (0.1, the fixed scheme's default). A
   trainer that measures G on a probe batch first may set ``initial_w`` with :func:`gdwa_task_weights`.

Other schemes: fixed (``w`` constant, 0.1); DWA (Liu et al., CVPR 2019: ``λ = K·softmax(r/T)``, λ = 1 in
the first two epochs, ``w = base_w · λ_csc/λ_fusion``); uncertainty (Kendall et al., CVPR 2018,
learnable ``s_i = log σ_i²``; ``total = Σ exp(−s_i)·L_i + s_i`` WITHOUT the 0.5 factors: the same minimum
in s (``s_i* = log L_i``) as the ½-form, and at the start (s = 0) both losses have unit weight, as in
the other schemes).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

TASKS: tuple[str, ...] = ("fusion", "csc")
"""The Stage II tasks; the first is the reference whose weight is normalised to 1."""

_STATE_VERSION = 1


@runtime_checkable
class TaskWeighting(Protocol):
    """What the trainer needs from a weighting scheme (see the module docstring for the loop)."""

    tasks: tuple[str, ...]
    needs_grad_norms: bool

    def weights(self) -> dict[str, float]:
        """Current per-task weights, fusion normalised to 1 (so ``w = weights()["csc"]``)."""
        ...

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        """Total loss of one step from the unweighted 0-dim task losses."""
        ...

    def end_epoch(
        self, epoch_losses: dict[str, float], grad_norms: dict[str, float] | None = None
    ) -> dict[str, float]:
        """Record the epoch's mean losses (and mean gradient norms), set and return the next weights."""
        ...

    def state_dict(self) -> dict:
        """JSON-serialisable state for an exact resume."""
        ...

    def load_state_dict(self, d: dict) -> None:
        """Restore a :meth:`state_dict`."""
        ...


# ---------------------------------------------------------------------------------------------------
# Pure formulas (used by the schemes; also handy for logging and for a probe-batch initial_w)


def descent_rates(loss_history: list[Mapping[str, float]]) -> dict[str, float]:
    """``r_i = L_i(t−1) / L_i(t−2)`` from the last two epoch-mean losses; 1.0 with fewer than two epochs."""
    if len(loss_history) < 2:
        return dict.fromkeys(TASKS, 1.0)
    before, last = loss_history[-2], loss_history[-1]
    return {task: float(last[task]) / float(before[task]) for task in TASKS}


def softmax_over_tasks(values: Mapping[str, float], temperature: float) -> dict[str, float]:
    """``softmax(v / T)`` over tasks; ``T = inf`` gives the uniform distribution."""
    _check_temperature(temperature)
    scaled = {task: float(values[task]) / temperature for task in TASKS}
    top = max(scaled.values())
    exps = {task: math.exp(v - top) for task, v in scaled.items()}
    total = sum(exps.values())
    return {task: e / total for task, e in exps.items()}


def dwa_task_weights(rates: Mapping[str, float], temperature: float = 2.0) -> dict[str, float]:
    """Liu et al.'s DWA: ``λ_i = K · softmax(r / T)_i`` (the weights sum to K = number of tasks)."""
    soft = softmax_over_tasks(rates, temperature)
    return {task: len(TASKS) * p for task, p in soft.items()}


def gradient_balance_factors(grad_norms: Mapping[str, float], grad_power: float = 1.0) -> dict[str, float]:
    """``f_i = (G_i / mean_j G_j) ** grad_power``; all 1 when every G is zero (no information).

    A zero norm is floored at 1e-12 of the largest, so ``grad_power < 0`` gives a huge but finite factor
    (the scheme's clamp then bounds ``w``).
    """
    norms = {}
    for task in TASKS:
        value = float(grad_norms[task])
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"gradient norm of task '{task}' must be finite and >= 0, got {value}")
        norms[task] = value
    largest = max(norms.values())
    if largest == 0.0:
        return dict.fromkeys(TASKS, 1.0)
    floored = {task: max(g, 1e-12 * largest) for task, g in norms.items()}
    mean = sum(floored.values()) / len(floored)
    return {task: (g / mean) ** grad_power for task, g in floored.items()}


def gdwa_task_weights(
    rates: Mapping[str, float],
    grad_norms: Mapping[str, float],
    temperature: float = 2.0,
    grad_power: float = 1.0,
) -> dict[str, float]:
    """GDWA weights before the fusion normalisation: ``λ_i = K · f_i s_i / Σ_j f_j s_j``.

    ``f`` from :func:`gradient_balance_factors`, ``s = softmax(r / T)``. ``λ_csc / λ_fusion`` is the
    (unclamped, ``base_w = 1``) ``w``.
    """
    factors = gradient_balance_factors(grad_norms, grad_power)
    soft = softmax_over_tasks(rates, temperature)
    products = {task: factors[task] * soft[task] for task in TASKS}
    total = sum(products.values())
    return {task: len(TASKS) * p / total for task, p in products.items()}


# ---------------------------------------------------------------------------------------------------
# Schemes


class _EpochWeighting:
    """Shared bookkeeping: epoch history, ``combine = L_fusion + w · L_csc``, JSON state."""

    name = ""
    needs_grad_norms = False
    tasks: tuple[str, ...] = TASKS

    def __init__(self, w: float) -> None:
        self._w = float(w)
        self._history: list[dict[str, Any]] = []  # [{"losses": {...}, "grad_norms": {...} | None}, ...]
        self.diagnostics: dict[str, Any] = {}

    def weights(self) -> dict[str, float]:
        return {"fusion": 1.0, "csc": self._w}

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        _check_task_keys(losses, f"{type(self).__name__}.combine(losses)")
        return losses["fusion"] + self._w * losses["csc"]

    def end_epoch(
        self, epoch_losses: dict[str, float], grad_norms: dict[str, float] | None = None
    ) -> dict[str, float]:
        losses = _checked_epoch_losses(epoch_losses, f"{type(self).__name__}.end_epoch(epoch_losses)")
        norms = None
        if grad_norms is not None:
            _check_task_keys(grad_norms, f"{type(self).__name__}.end_epoch(grad_norms)")
            norms = {task: float(grad_norms[task]) for task in TASKS}
        self._history.append({"losses": losses, "grad_norms": norms})
        self._w = self._next_w()
        return self.weights()

    @property
    def epochs_seen(self) -> int:
        return len(self._history)

    def _next_w(self) -> float:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "version": _STATE_VERSION,
            "scheme": self.name,
            "config": self.config(),
            "w": self._w,
            "history": [
                {
                    "losses": dict(h["losses"]),
                    "grad_norms": None if h["grad_norms"] is None else dict(h["grad_norms"]),
                }
                for h in self._history
            ],
            "diagnostics": dict(self.diagnostics),
        }

    def load_state_dict(self, d: dict) -> None:
        _check_state(d, self.name, self.config())
        self._w = float(d["w"])
        self._history = [
            {
                "losses": dict(h["losses"]),
                "grad_norms": None if h["grad_norms"] is None else dict(h["grad_norms"]),
            }
            for h in d["history"]
        ]
        self.diagnostics = dict(d.get("diagnostics", {}))

    def _loss_history(self) -> list[dict[str, float]]:
        return [h["losses"] for h in self._history]


class FixedWeighting(_EpochWeighting):
    """Constant ``w`` (default 0.1): the baseline of the ablation."""

    name = "fixed"

    def __init__(self, w: float = 0.1) -> None:
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"fixed weighting: w must be finite and >= 0, got {w}")
        super().__init__(w)
        self._fixed = float(w)

    def _next_w(self) -> float:
        return self._fixed

    def config(self) -> dict[str, Any]:
        return {"w": self._fixed}


class DWAWeighting(_EpochWeighting):
    """Dynamic Weight Average (Liu et al., CVPR 2019): ``λ = K·softmax(r/T)``, ``w = base_w·λ_csc/λ_fusion``.

    ``λ = 1`` (so ``w = base_w``) until two epochs have been seen. ``base_w = 1`` is Liu et al. exactly;
    DWA balances pace only, not scale, so e.g. ``base_w = 0.1`` starts from the fixed scheme's scale.
    """

    name = "dwa"

    def __init__(self, temperature: float = 2.0, base_w: float = 1.0) -> None:
        _check_temperature(temperature)
        _check_positive("dwa", "base_w", base_w)
        super().__init__(base_w)
        self.temperature = float(temperature)
        self.base_w = float(base_w)

    def _next_w(self) -> float:
        rates = descent_rates(self._loss_history())
        lam = dwa_task_weights(rates, self.temperature)
        self.diagnostics = {"rates": rates, "task_weights": lam}
        return self.base_w * lam["csc"] / lam["fusion"]

    def config(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "base_w": self.base_w}


class GDWAWeighting(_EpochWeighting):
    """SSVIF's GDWA: gradient-norm balance × DWA descent-rate softmax (formula and choices: module docstring).

    Needs ``grad_norms`` (epoch means of :func:`task_grad_norms` over the fusion model's parameters) at
    every :meth:`end_epoch`. ``diagnostics`` after each update: rates, softmax, gradient factors, task
    weights, the unclamped ``w`` and whether it was clamped.
    """

    name = "gdwa"
    needs_grad_norms = True

    def __init__(
        self,
        temperature: float = 2.0,
        grad_power: float = 1.0,
        base_w: float = 1.0,
        initial_w: float = 0.1,
        w_min: float = 1e-3,
        w_max: float = 10.0,
    ) -> None:
        _check_temperature(temperature)
        if not math.isfinite(grad_power):
            raise ValueError(f"gdwa: grad_power must be finite, got {grad_power}")
        _check_positive("gdwa", "base_w", base_w)
        _check_positive("gdwa", "w_min", w_min)
        if not (math.isfinite(w_max) and w_max >= w_min):
            raise ValueError(f"gdwa: w_max must be finite and >= w_min ({w_min}), got {w_max}")
        if not (w_min <= initial_w <= w_max):
            raise ValueError(f"gdwa: initial_w {initial_w} must lie in [w_min, w_max] = [{w_min}, {w_max}]")
        super().__init__(initial_w)
        self.temperature = float(temperature)
        self.grad_power = float(grad_power)
        self.base_w = float(base_w)
        self.initial_w = float(initial_w)
        self.w_min = float(w_min)
        self.w_max = float(w_max)

    def end_epoch(
        self, epoch_losses: dict[str, float], grad_norms: dict[str, float] | None = None
    ) -> dict[str, float]:
        if grad_norms is None:
            raise ValueError(
                "gdwa weighting needs grad_norms at every end_epoch: measure them with "
                "ssvif_ros.train.weighting.task_grad_norms on the fusion model's parameters "
                "(needs_grad_norms=True)"
            )
        return super().end_epoch(epoch_losses, grad_norms)

    def _next_w(self) -> float:
        rates = descent_rates(self._loss_history())
        grad_norms = self._history[-1]["grad_norms"]
        soft = softmax_over_tasks(rates, self.temperature)
        factors = gradient_balance_factors(grad_norms, self.grad_power)
        lam = gdwa_task_weights(rates, grad_norms, self.temperature, self.grad_power)
        raw = self.base_w * lam["csc"] / lam["fusion"]
        w = min(max(raw, self.w_min), self.w_max)
        self.diagnostics = {
            "rates": rates,
            "softmax": soft,
            "grad_norms": dict(grad_norms),
            "grad_factors": factors,
            "task_weights": lam,
            "w_unclamped": raw,
            "clamped": w != raw,
        }
        return w

    def config(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "grad_power": self.grad_power,
            "base_w": self.base_w,
            "initial_w": self.initial_w,
            "w_min": self.w_min,
            "w_max": self.w_max,
        }


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (CVPR 2018) uncertainty weighting; learnable ``log_vars`` (2,) = (s_fusion, s_csc).

    ``combine(losses) = Σ_i exp(−s_i)·L_i + s_i`` (no 0.5 factors, see the module docstring). Add
    ``parameters()`` to the optimizer and move the module to the losses' device. ``weights()`` reports
    the effective ``w = exp(−s_csc)/exp(−s_fusion)`` for logging; ``task_weights()`` the raw ``exp(−s_i)``.

    :meth:`state_dict` / :meth:`load_state_dict` with no extra arguments use the JSON form of the
    :class:`TaskWeighting` interface; called the way ``nn.Module`` machinery calls them (with a prefix,
    destination, tensors) they fall through to ``nn.Module``'s own. The optimizer's state for ``log_vars``
    (e.g. Adam moments) is the trainer's to save, with the optimizer.
    """

    name = "uncertainty"
    needs_grad_norms = False
    tasks: tuple[str, ...] = TASKS

    def __init__(self, initial_w: float = 1.0) -> None:
        super().__init__()
        _check_positive("uncertainty", "initial_w", initial_w)
        self.initial_w = float(initial_w)
        # s_fusion = 0, s_csc = −log(initial_w): effective w starts at initial_w (1: Kendall's zero init).
        self.log_vars = nn.Parameter(torch.tensor([0.0, -math.log(initial_w)], dtype=torch.float32))
        self._history: list[dict[str, Any]] = []

    def task_weights(self) -> dict[str, float]:
        values = torch.exp(-self.log_vars.detach()).tolist()
        return dict(zip(TASKS, values, strict=True))

    def weights(self) -> dict[str, float]:
        s_fusion, s_csc = self.log_vars.detach().double().tolist()
        return {"fusion": 1.0, "csc": math.exp(s_fusion - s_csc)}

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        _check_task_keys(losses, "UncertaintyWeighting.combine(losses)")
        terms = [
            torch.exp(-self.log_vars[i]) * losses[task] + self.log_vars[i] for i, task in enumerate(TASKS)
        ]
        return torch.stack(terms).sum()

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        return self.combine(losses)

    def end_epoch(
        self, epoch_losses: dict[str, float], grad_norms: dict[str, float] | None = None
    ) -> dict[str, float]:
        losses = _checked_epoch_losses(epoch_losses, "UncertaintyWeighting.end_epoch(epoch_losses)")
        self._history.append({"losses": losses, "grad_norms": None})
        return self.weights()

    @property
    def epochs_seen(self) -> int:
        return len(self._history)

    def config(self) -> dict[str, Any]:
        return {"initial_w": self.initial_w}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:  # type: ignore[override]
        if args or kwargs:
            return super().state_dict(*args, **kwargs)
        return {
            "version": _STATE_VERSION,
            "scheme": self.name,
            "config": self.config(),
            "w": self.weights()["csc"],
            "log_vars": self.log_vars.detach().cpu().tolist(),
            "history": [{"losses": dict(h["losses"]), "grad_norms": None} for h in self._history],
        }

    def load_state_dict(self, d: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if args or kwargs or "scheme" not in d:
            return super().load_state_dict(d, *args, **kwargs)
        _check_state(d, self.name, self.config())
        log_vars = [float(v) for v in d["log_vars"]]
        if len(log_vars) != len(TASKS):
            raise ValueError(f"uncertainty state: log_vars needs {len(TASKS)} values, got {len(log_vars)}")
        with torch.no_grad():  # in place, so the optimizer keeps the same Parameter object
            self.log_vars.copy_(torch.tensor(log_vars, dtype=self.log_vars.dtype))
        self._history = [{"losses": dict(h["losses"]), "grad_norms": None} for h in d["history"]]
        return None


_SCHEMES: dict[str, type] = {
    "fixed": FixedWeighting,
    "dwa": DWAWeighting,
    "uncertainty": UncertaintyWeighting,
    "gdwa": GDWAWeighting,
}
WEIGHTING_NAMES: tuple[str, ...] = tuple(_SCHEMES)


def create_weighting(name: str, **cfg: Any) -> TaskWeighting:
    """Build a scheme by config name (``fixed``, ``dwa``, ``uncertainty``, ``gdwa``) with its options."""
    key = str(name).strip().lower()
    if key not in _SCHEMES:
        raise ValueError(f"unknown weighting scheme '{name}'; choose one of: {', '.join(WEIGHTING_NAMES)}")
    cls = _SCHEMES[key]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(cfg) - set(accepted))
    if unknown:
        raise ValueError(
            f"weighting scheme '{key}' got unknown option(s) {unknown}; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )
    return cls(**cfg)


# ---------------------------------------------------------------------------------------------------
# Gradient measurement and analysis


def _grads(loss: Tensor, params: list[Tensor]) -> list[Tensor | None]:
    if not loss.requires_grad:  # e.g. a detached or constant loss: no gradient reaches θ
        return [None] * len(params)
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))


def _trainable(params: Iterable[Tensor]) -> list[Tensor]:
    selected = [p for p in params if p.requires_grad]
    if not selected:
        raise ValueError("task gradients: none of the given parameters requires grad")
    return selected


def task_gradients(losses: Mapping[str, Tensor], params: Iterable[Tensor]) -> dict[str, Tensor]:
    """Per task, ``∇_θ L_i`` flattened and concatenated over ``params``: (P,) detached, P = Σ numel.

    Parameters the loss does not reach count as zero. The graph is retained, so the caller can still
    ``backward()`` the combined loss afterwards. Parameters without ``requires_grad`` are skipped.
    """
    selected = _trainable(params)
    out = {}
    for task, loss in losses.items():
        grads = _grads(loss, selected)
        out[task] = torch.cat(
            [
                (torch.zeros_like(p) if g is None else g.detach()).reshape(-1)
                for p, g in zip(selected, grads, strict=True)
            ]
        )
    return out


def task_grad_norms(losses: Mapping[str, Tensor], params: Iterable[Tensor]) -> dict[str, float]:
    """Per task, ``‖∇_θ L_i‖₂`` over ``params`` (accumulated in float64, without concatenating)."""
    selected = _trainable(params)
    norms = []
    for loss in losses.values():
        grads = [g for g in _grads(loss, selected) if g is not None]
        if grads:
            per_param = torch.stack(
                [torch.linalg.vector_norm(g.detach(), dtype=torch.float64).cpu() for g in grads]
            )
            norms.append(torch.linalg.vector_norm(per_param))
        else:
            norms.append(torch.zeros((), dtype=torch.float64))
    values = torch.stack(norms).tolist()  # one host sync for all tasks
    return dict(zip(losses.keys(), values, strict=True))


def projection_coefficient(g_csc: Tensor, g_fus: Tensor) -> float:
    """``(g_csc · g_fus) / ‖g_fus‖²``: how much of g_fus the CSC gradient carries (negative = conflict).

    Any shapes with the same number of elements (flattened); computed in float64.
    """
    a = g_csc.detach().reshape(-1).double()
    b = g_fus.detach().reshape(-1).double()
    if a.numel() != b.numel():
        raise ValueError(f"projection_coefficient: g_csc has {a.numel()} elements, g_fus {b.numel()}")
    denom = torch.dot(b, b)
    if denom.item() == 0.0:
        raise ValueError("projection_coefficient: g_fus is the zero vector, the projection is undefined")
    return float(torch.dot(a, b) / denom)


# ---------------------------------------------------------------------------------------------------
# Validation helpers


def _check_temperature(temperature: float) -> None:
    if not (temperature > 0):  # also rejects NaN; inf is allowed (uniform softmax)
        raise ValueError(f"weighting temperature T must be > 0, got {temperature}")


def _check_positive(scheme: str, field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{scheme}: {field} must be finite and > 0, got {value}")


def _check_task_keys(mapping: Mapping[str, Any], where: str) -> None:
    if set(mapping) != set(TASKS):
        raise ValueError(f"{where}: expected keys {list(TASKS)}, got {sorted(mapping)}")


def _checked_epoch_losses(epoch_losses: Mapping[str, float], where: str) -> dict[str, float]:
    _check_task_keys(epoch_losses, where)
    out = {}
    for task in TASKS:
        value = float(epoch_losses[task])
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"{where}: epoch-mean loss of '{task}' must be finite and > 0 (descent rates divide by it), "
                f"got {value}"
            )
        out[task] = value
    return out


def _check_state(d: Mapping[str, Any], scheme: str, config: dict[str, Any]) -> None:
    if d.get("scheme") != scheme:
        raise ValueError(f"weighting state is for scheme '{d.get('scheme')}', this weighting is '{scheme}'")
    if d.get("version") != _STATE_VERSION:
        raise ValueError(
            f"weighting state version {d.get('version')} is not supported (expected {_STATE_VERSION})"
        )
    saved = d.get("config", {})
    differing = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if differing:
        details = ", ".join(f"{k}: saved {saved.get(k)!r} vs now {config.get(k)!r}" for k in differing)
        raise ValueError(
            f"{scheme} weighting state was saved with another config ({details}); resume would differ"
        )
