"""State space models: the card's neural SSM and the diagonal linear SSM layer (chapter 1)."""
import math

import pytest
import torch

from ssm_metarl import CheckpointError, DiagonalSSM, StateSpaceModel, discretize, parallel_scan
from ssm_metarl.models.s4d import COMPUTE_MODES as MODES

# Tolerances for "the three modes compute the same output", relative to the output's scale.
# float64: the modes differ only by rounding order, so agreement is near machine precision.
# float32: the FFT and the scan sum in a different order than the loop over up to L=300 steps.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _scaled_transition(model: StateSpaceModel, scale: float) -> StateSpaceModel:
    with torch.no_grad():
        for p in model.transition.parameters():
            p.mul_(scale)
    return model


# ----------------------------------------------------------------------------- StateSpaceModel


def test_card_configuration_has_exactly_6744_parameters():
    model = StateSpaceModel(state_dim=32, input_dim=4, output_dim=4, hidden_dim=64)
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in model.named_children()}
    assert counts == {"transition": 32 * 64 + 64 + 64 * 32 + 32, "input_map": 4 * 32 + 32,
                      "readout": 32 * 64 + 64 + 64 * 4 + 4, "feedthrough": 4 * 4 + 4}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 6744
    assert sum(p.numel() for p in StateSpaceModel(bounded=False).parameters()) == 6744  # the fix is free


def test_shapes_of_one_step_and_a_sequence():
    model = StateSpaceModel()
    hidden = model.init_hidden(5)
    assert hidden.shape == (5, 32) and not hidden.any()
    y, h = model(torch.randn(5, 4), hidden)
    assert y.shape == (5, 4) and h.shape == (5, 32)
    ys, h_last = model.forward_sequence(torch.randn(5, 7, 4))
    assert ys.shape == (5, 7, 4) and h_last.shape == (5, 32)
    assert model.double().init_hidden(2).dtype == torch.float64


def test_sequence_helper_equals_stepping_by_hand():
    torch.manual_seed(0)
    model = StateSpaceModel()
    xs = torch.randn(3, 6, 4)
    ys, h_last = model.forward_sequence(xs)
    h = model.init_hidden(3)
    for t in range(6):
        y, h = model(xs[:, t], h)
        assert torch.allclose(ys[:, t], y)
    assert torch.allclose(h_last, h)


@pytest.mark.parametrize("call, expected", [
    (lambda m: m(torch.randn(2, 5), m.init_hidden(2)), r"x must have shape \(B, 4\), got \(2, 5\)"),
    (lambda m: m(torch.randn(4), m.init_hidden(1)), r"x must have shape \(B, 4\)"),
    (lambda m: m(torch.randn(2, 4), m.init_hidden(3)), r"hidden must have shape \(2, 32\), got \(3, 32\)"),
    (lambda m: m(torch.randn(2, 4), torch.zeros(2, 16)), r"hidden must have shape \(2, 32\)"),
    (lambda m: m.forward_sequence(torch.randn(2, 4)), r"xs must have shape \(B, T, 4\)"),
    (lambda m: m.forward_sequence(torch.randn(2, 0, 4)), r"at least one time step"),
    (lambda m: m.init_hidden(0), r"batch_size must be a positive int"),
], ids=["x width", "x rank", "hidden batch", "hidden width", "sequence rank", "empty sequence", "batch size"])
def test_wrong_shapes_raise_value_errors_naming_the_expected_shape(call, expected):
    with pytest.raises(ValueError, match=expected):
        call(StateSpaceModel())


def test_bad_sizes_raise_value_errors():
    with pytest.raises(ValueError, match="state_dim must be a positive int"):
        StateSpaceModel(state_dim=0)


def test_load_as_classmethod_returns_an_equal_model(tmp_path):
    torch.manual_seed(1)
    model = StateSpaceModel(state_dim=8, hidden_dim=16, bounded=False)
    model.save(tmp_path / "m.pth")
    loaded = StateSpaceModel.load(tmp_path / "m.pth")
    assert isinstance(loaded, StateSpaceModel) and loaded is not model
    assert loaded.config == model.config
    x, h = torch.randn(2, 4), model.init_hidden(2)
    assert torch.equal(loaded(x, h)[0], model(x, h)[0])


def test_load_on_an_instance_loads_in_place_and_checks_the_config(tmp_path):
    torch.manual_seed(2)
    source = StateSpaceModel()
    source.save(tmp_path / "card.pth")
    target = StateSpaceModel()  # different random weights
    returned = target.load(tmp_path / "card.pth")  # the model card's form
    assert returned is target
    for (name, p), q in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(p, q), name
    with pytest.raises(CheckpointError, match="checkpoint has state_dim=32, model expects 16"):
        StateSpaceModel(state_dim=16).load(tmp_path / "card.pth")
    with pytest.raises(CheckpointError, match="checkpoint has bounded=True, model expects False"):
        StateSpaceModel(bounded=False).load(tmp_path / "card.pth")


def test_load_reports_weights_that_do_not_fit(tmp_path):
    from ssm_metarl import save_checkpoint
    model = StateSpaceModel()
    weights = dict(model.state_dict())
    weights.pop("feedthrough.bias")
    save_checkpoint(tmp_path / "w.pth", kind="StateSpaceModel", config=model.config.__dict__, state_dict=weights)
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        StateSpaceModel.load(tmp_path / "w.pth")
    save_checkpoint(tmp_path / "c.pth", kind="StateSpaceModel", config={"state_dim": -3}, state_dict=weights)
    with pytest.raises(CheckpointError, match="config does not fit SSMConfig"):
        StateSpaceModel.load(tmp_path / "c.pth")


def _run_random_inputs(model: StateSpaceModel, steps: int, seed: int) -> torch.Tensor:
    """Largest |h| over ``steps`` steps of standard-normal inputs (NaN if any state was NaN)."""
    inputs = torch.randn(steps, 8, 4, generator=torch.Generator().manual_seed(seed))
    h, states = model.init_hidden(8), []
    with torch.no_grad():
        for x in inputs:
            _, h = model(x, h)
            states.append(h)
    return torch.stack(states).abs().max()  # max propagates NaN, so a blow-up is never missed




@pytest.mark.parametrize("seed", [0, 1])
def test_bounded_state_stays_finite_for_1000_steps_where_the_unbounded_one_blows_up(seed, one_thread):
    torch.manual_seed(seed)
    bounded = _scaled_transition(StateSpaceModel(bounded=True), 3.0)
    unbounded = StateSpaceModel(bounded=False)
    unbounded.load_state_dict(bounded.state_dict())  # the same random weights, scaled up 3x
    largest = _run_random_inputs(bounded, 1000, seed)
    assert torch.isfinite(largest) and largest <= 1.0
    blown = _run_random_inputs(unbounded, 1000, seed)
    assert not torch.isfinite(blown) or blown > 1e6, "the demonstration of the blow-up no longer blows up"


def test_card_model_is_not_linear_in_its_input():
    torch.manual_seed(0)
    model = StateSpaceModel()
    u1, u2 = torch.randn(1, 20, 4), torch.randn(1, 20, 4)
    y = lambda u: model.forward_sequence(u)[0] - model.forward_sequence(torch.zeros_like(u))[0]
    assert (y(u1 + u2) - y(u1) - y(u2)).abs().max() > 1e-2  # superposition fails: no convolution kernel


# ----------------------------------------------------------------------------- discretize


def test_zoh_and_bilinear_formulas_for_a_diagonal_system():
    A = torch.tensor([-0.5 + 3j, -2.0 + 0j], dtype=torch.complex128)
    B = torch.tensor([1.0 + 0j, 0.5 + 1j], dtype=torch.complex128)
    dt = 0.1
    A_bar, B_bar = discretize(A, B, dt, "zoh")
    assert torch.allclose(A_bar, torch.exp(dt * A))
    assert torch.allclose(B_bar, (torch.exp(dt * A) - 1) / A * B)
    A_bar, B_bar = discretize(A, B, dt, "bilinear")
    assert torch.allclose(A_bar, (1 + dt * A / 2) / (1 - dt * A / 2))
    assert torch.allclose(B_bar, dt * B / (1 - dt * A / 2))


def _mass_spring(k=4.0, c=0.6):
    return torch.tensor([[0.0, 1.0], [-k, -c]], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)


def test_zoh_after_diagonalisation_equals_the_matrix_exponential():
    A, B = _mass_spring()
    dt = 0.2
    eigenvalues, V = torch.linalg.eig(A)
    A_bar, B_bar = discretize(eigenvalues, torch.linalg.solve(V, B.to(V.dtype)), dt, "zoh")
    dense_A_bar = (V @ torch.diag(A_bar) @ torch.linalg.inv(V)).real
    assert torch.allclose(dense_A_bar, torch.linalg.matrix_exp(dt * A), atol=1e-12)
    # B_bar = integral_0^dt exp(A s) ds B, read off the exponential of an augmented matrix
    M = torch.zeros(3, 3, dtype=torch.float64)
    M[:2, :2], M[:2, 2] = A, B
    assert torch.allclose((V @ B_bar).real, torch.linalg.matrix_exp(dt * M)[:2, 2], atol=1e-12)


def test_zoh_is_exact_for_a_piecewise_constant_input_and_bilinear_is_second_order():
    A, B = _mass_spring()
    eigenvalues, V = torch.linalg.eig(A)
    B_modes = torch.linalg.solve(V, B.to(V.dtype))
    T, force = 6.0, 1.0  # push with a constant force for the whole time, from rest
    M = torch.zeros(3, 3, dtype=torch.float64)
    M[:2, :2], M[:2, 2] = A, B
    exact = torch.linalg.matrix_exp(T * M)[:2, 2] * force  # the state at time T
    errors = {}
    for method in ("zoh", "bilinear"):
        for steps in (50, 100):
            A_bar, B_bar = discretize(eigenvalues, B_modes, T / steps, method)
            x = torch.zeros(2, dtype=V.dtype)
            for _ in range(steps):
                x = A_bar * x + B_bar * force
            errors[method, steps] = ((V @ x).real - exact).abs().max().item()
    assert errors["zoh", 50] < 1e-12 and errors["zoh", 100] < 1e-12
    assert 3.5 < errors["bilinear", 50] / errors["bilinear", 100] < 4.5  # halving dt quarters the error


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_stable_continuous_eigenvalues_stay_inside_the_unit_circle(method):
    g = torch.Generator().manual_seed(0)
    A = torch.complex(-torch.rand(1000, generator=g, dtype=torch.float64) * 10 - 1e-3,
                      torch.randn(1000, generator=g, dtype=torch.float64) * 50)
    for dt in (1e-4, 1e-2, 1.0, 100.0):
        A_bar, _ = discretize(A, torch.ones_like(A), dt, method)
        assert A_bar.abs().max() < 1
    A_bar, _ = discretize(-A, torch.ones_like(A), 0.1, method)  # unstable in, unstable out
    assert A_bar.abs().min() > 1


@pytest.mark.parametrize("kwargs, expected", [
    ({"method": "euler"}, r"unknown method 'euler'; valid choices: \('zoh', 'bilinear'\)"),
    ({"dt": 0.0}, "dt must be finite and positive"),
    ({"dt": torch.tensor([0.1, -1.0])}, "dt must be finite and positive"),
    ({"A": torch.tensor([0.0, -1.0])}, "zoh needs every A != 0"),
])
def test_discretize_rejects_bad_arguments(kwargs, expected):
    args = {"A": torch.tensor([-1.0, -2.0]), "B": torch.ones(2), "dt": 0.1, "method": "zoh", **kwargs}
    with pytest.raises(ValueError, match=expected):
        discretize(args["A"], args["B"], args["dt"], args["method"])


# ----------------------------------------------------------------------------- parallel_scan


@pytest.mark.parametrize("length", [1, 2, 7, 64, 100])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_parallel_scan_equals_the_sequential_recurrence(length, dtype):
    g = torch.Generator().manual_seed(length)
    a = (torch.rand(3, 4, generator=g, dtype=torch.float64) * 1.8 - 0.9).to(dtype)
    b = torch.randn(2, length, 3, 4, generator=g, dtype=torch.float64).to(dtype)
    x, expected = torch.zeros_like(b[:, 0]), []
    for t in range(length):
        x = a * x + b[:, t]
        expected.append(x)
    assert torch.allclose(parallel_scan(a, b), torch.stack(expected, dim=1), atol=1e-12)


# ----------------------------------------------------------------------------- DiagonalSSM


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("complex_state", [True, False], ids=["complex", "real"])
@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_recurrence_fft_and_scan_compute_the_same_output(method, complex_state, dtype):
    model = DiagonalSSM(6, 5, complex_state=complex_state, method=method, dt_min=1e-3, dt_max=0.5, seed=3).to(dtype)
    u = torch.randn(3, 300, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)
    outputs = {mode: model(u, mode=mode) for mode in MODES}
    scale = outputs["recurrence"].abs().max()
    for mode in ("scan", "fft"):
        assert outputs[mode].shape == u.shape and outputs[mode].dtype == dtype
        assert (outputs[mode] - outputs["recurrence"]).abs().max() <= TOLERANCE[dtype] * scale, mode


def test_the_three_modes_give_the_same_gradients():
    model = DiagonalSSM(4, 3, method="bilinear", seed=5).double()
    u = torch.randn(2, 33, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = {}
    for mode in MODES:
        model.zero_grad()
        model(u, mode=mode).sin().sum().backward()
        grads[mode] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(grads["scan"], grads["recurrence"], atol=1e-9)
    assert torch.allclose(grads["fft"], grads["recurrence"], atol=1e-9)


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 512])
@pytest.mark.parametrize("length", [1, 63, 64, 65, 300])
def test_chunked_scan_equals_the_recurrence_for_any_chunk_length(length, chunk):
    # chunk=1 is the plain scan; chunk > length is one chunk; 65 and 300 leave a partial last chunk
    model = DiagonalSSM(3, 4, method="bilinear", seed=6).double()
    u = torch.randn(2, length, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(length))
    assert torch.allclose(model(u, mode="scan", chunk=chunk), model(u, mode="recurrence"), atol=1e-10)


@pytest.mark.parametrize("chunk", [1, 8])
def test_chunked_scan_gradients_reach_the_input_and_every_parameter(chunk):
    model = DiagonalSSM(3, 2, seed=7).double()
    grads = {}
    for mode in ("recurrence", "scan"):
        u = torch.randn(2, 30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
        model.zero_grad()
        model(u, mode=mode, chunk=chunk).sin().sum().backward()
        grads[mode] = torch.cat([u.grad.flatten()] + [p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(grads["scan"], grads["recurrence"], atol=1e-9)


@pytest.mark.parametrize("length", [1, 2, 3, 17, 100, 2048])
def test_blocked_kernel_equals_the_full_vandermonde_product(length):
    model = DiagonalSSM(4, 6, seed=1).double()
    A_bar, B_bar, C = model.discrete()
    powers = A_bar[..., None] ** torch.arange(length, dtype=torch.float64)  # (H, N, L), built in full
    expected = torch.einsum("hn,hnl->lh", C * B_bar, powers).real
    assert model.kernel(length).shape == (length, 4)
    assert torch.allclose(model.kernel(length), expected, atol=1e-10)


@pytest.mark.parametrize("length", [1, 2, 5])
def test_short_and_odd_lengths(length):
    model = DiagonalSSM(3, 2).double()
    u = torch.randn(1, length, 3, dtype=torch.float64)
    y = model(u, mode="recurrence")
    assert torch.allclose(model(u, mode="scan"), y) and torch.allclose(model(u, mode="fft"), y)


def test_kernel_is_the_impulse_response():
    model = DiagonalSSM(4, 6, seed=1).double()
    impulse = torch.zeros(1, 50, 4, dtype=torch.float64)
    impulse[:, 0] = 1.0
    response = model(impulse, mode="recurrence")[0]
    expected = model.kernel(50).clone()
    expected[0] += model.D
    assert torch.allclose(response, expected, atol=1e-12)


def test_step_matches_the_sequence_and_state_is_complex_or_real():
    model = DiagonalSSM(3, 4, seed=2).double()
    u = torch.randn(2, 10, 3, dtype=torch.float64)
    state = model.init_state(2)
    assert state.shape == (2, 3, 4) and state.dtype == torch.complex128
    for t in range(10):
        y, state = model.step(u[:, t], state)
        assert torch.allclose(y, model(u[:, : t + 1], mode="recurrence")[:, -1])
    assert DiagonalSSM(3, 4, complex_state=False).init_state(1).dtype == torch.float32


@pytest.mark.parametrize("complex_state", [True, False])
@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_initial_eigenvalues_are_inside_the_unit_circle(method, complex_state):
    model = DiagonalSSM(32, 16, complex_state=complex_state, method=method)
    A_bar = model.discrete()[0]
    assert A_bar.abs().max() < 1
    A = model.continuous()[0]
    if complex_state:  # S4D-Lin
        assert torch.allclose(A, torch.complex(torch.full((32, 16), -0.5), math.pi * torch.arange(16.0).expand(32, 16)))
    else:  # S4D-Real
        assert torch.allclose(A, -torch.arange(1.0, 17.0).expand(32, 16))


def test_the_layer_is_linear_and_time_invariant():
    model = DiagonalSSM(2, 4, seed=0).double()
    g = torch.Generator().manual_seed(1)
    u1, u2 = (torch.randn(1, 40, 2, generator=g, dtype=torch.float64) for _ in range(2))
    assert torch.allclose(model(2 * u1 + u2), 2 * model(u1) + model(u2), atol=1e-12)
    delayed = torch.cat([torch.zeros(1, 5, 2, dtype=torch.float64), u1[:, :-5]], dim=1)
    assert torch.allclose(model(delayed)[:, 5:], model(u1)[:, :-5], atol=1e-12)


def test_same_seed_same_weights():
    a, b, c = DiagonalSSM(seed=7), DiagonalSSM(seed=7), DiagonalSSM(seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.C, c.C)


@pytest.mark.parametrize("call, expected", [
    (lambda m: m(torch.randn(2, 10, 5)), r"u must have shape \(B, L, 4\) with L >= 1, got \(2, 10, 5\)"),
    (lambda m: m(torch.randn(10, 4)), r"u must have shape \(B, L, 4\)"),
    (lambda m: m(torch.randn(2, 0, 4)), r"with L >= 1"),
    (lambda m: m(torch.randn(2, 10, 4), mode="loop"), r"unknown mode 'loop'; valid choices: \('recurrence', 'scan', 'fft'\)"),
    (lambda m: m(torch.randn(2, 10, 4), mode="scan", chunk=0), "chunk must be a positive int, got 0"),
    (lambda m: m(torch.randn(2, 10, 4), mode="scan", chunk=2.5), "chunk must be a positive int, got 2.5"),
    (lambda m: m.chunked_scan(torch.randn(2, 10, 5)), r"u must have shape \(B, L, 4\)"),
    (lambda m: m.step(torch.randn(2, 3), m.init_state(2)), r"u_t must have shape \(B, 4\)"),
    (lambda m: m.step(torch.randn(2, 4), m.init_state(3)), r"state must have shape \(2, 4, 3\)"),
    (lambda m: m.init_state(-1), "batch_size must be a positive int"),
    (lambda m: DiagonalSSM(4, 3, method="euler"), "unknown method 'euler'; valid choices"),
    (lambda m: DiagonalSSM(0, 3), "channels must be a positive int"),
    (lambda m: DiagonalSSM(4, 3, dt_min=0.5, dt_max=0.1), "need 0 < dt_min <= dt_max"),
])
def test_diagonal_ssm_rejects_bad_input(call, expected):
    with pytest.raises(ValueError, match=expected):
        call(DiagonalSSM(4, 3))
