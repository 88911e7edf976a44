"""LatentSpec layout, information loss and bounds, traversal grids, code-spec parsing, Q head."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from infogan_plugin.codes import Categorical, Gaussian, Uniform
from infogan_plugin.head import QHead
from infogan_plugin.latent import CodeSlot, LatentSpec, parse_code_spec
from infogan_plugin.qlosses import MIN_LOG_STD, CategoricalCE, GaussianNLL, GaussianNLLFixed


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mnist_spec(noise: str = "uniform") -> LatentSpec:
    """The paper's MNIST layout: 62 noise + Cat(10) + two U(-1, 1) codes."""
    return LatentSpec(
        noise_dim=62,
        noise=noise,
        slots=[
            CodeSlot("digit", Categorical(k=10), CategoricalCE(), 1.0),
            CodeSlot("c2", Uniform(), GaussianNLLFixed(), 0.1),
            CodeSlot("c3", Uniform(), GaussianNLLFixed(), 0.1),
        ],
    )


def learned_std_spec() -> LatentSpec:
    return LatentSpec(
        noise_dim=5,
        slots=[
            CodeSlot("cat", Categorical(k=10), CategoricalCE(), 1.0),
            CodeSlot("gauss", Gaussian(dim=2), GaussianNLL(), 0.1),
        ],
    )


def test_mnist_layout_dims() -> None:
    spec = mnist_spec()
    assert spec.input_dim == 74
    assert spec.q_dim == 12
    assert [s.name for s in spec.slots] == ["digit", "c2", "c3"] and spec.index("c3") == 2
    assert learned_std_spec().q_dim == 10 + 4


def test_sample_layout_z_first_then_codes() -> None:
    spec = mnist_spec()
    x, codes = spec.sample(1000, generator=_gen(0), device="cpu")
    assert x.shape == (1000, 74) and x.dtype == torch.float32
    assert [c.shape for c in codes] == [(1000, 10), (1000, 1), (1000, 1)]
    assert (
        torch.equal(x[:, 62:72], codes[0]) and torch.equal(x[:, 72:73], codes[1]) and torch.equal(x[:, 73:], codes[2])
    )
    z = x[:, :62]
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.99  # U(-1, 1), not U(0, 1)


def test_normal_noise() -> None:
    x, _ = mnist_spec(noise="normal").sample(4000, generator=_gen(0), device="cpu")
    z = x[:, :62]
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1.0) < 0.02 and z.min() < -3
    with pytest.raises(ValueError, match="noise"):
        mnist_spec(noise="laplace")


def test_sample_reproducible_and_independent_of_global_rng() -> None:
    spec = mnist_spec()
    torch.manual_seed(0)
    first, _ = spec.sample(32, generator=_gen(7), device="cpu")
    torch.manual_seed(12345)
    torch.randn(100)
    second, _ = spec.sample(32, generator=_gen(7), device="cpu")
    assert torch.equal(first, second)


def test_split_q_chunks_and_width_check() -> None:
    spec = learned_std_spec()
    q_out = torch.arange(2 * spec.q_dim, dtype=torch.float32).reshape(2, spec.q_dim)
    chunks = spec.split_q(q_out)
    assert [c.shape[1] for c in chunks] == [10, 4]
    assert torch.equal(torch.cat(chunks, dim=1), q_out)
    with pytest.raises(ValueError, match=r"\(B, 14\)"):
        spec.split_q(torch.zeros(2, 13))


def _perfect_q(spec: LatentSpec, codes: list[torch.Tensor]) -> torch.Tensor:
    """Q output that recovers every code: a huge logit on the true class, mean = c with tiny std."""
    cat, gauss = codes
    logits = 50.0 * cat
    return torch.cat([logits, gauss, torch.full_like(gauss, MIN_LOG_STD)], dim=1)


def test_perfect_q_reaches_entropy_for_categorical() -> None:
    spec = learned_std_spec()
    _, codes = spec.sample(256, generator=_gen(0), device="cpu")
    _, nll = spec.information_loss(_perfect_q(spec, codes), codes)
    bounds = spec.lower_bounds(nll)
    assert bounds["cat"].item() == pytest.approx(math.log(10), abs=1e-4)
    # continuous: NLL per dim = log std + 0.5 ln(2 pi) at the clamp floor
    expected_nll = 2 * (MIN_LOG_STD + 0.5 * math.log(2 * math.pi))
    assert nll["gauss"].item() == pytest.approx(expected_nll, abs=1e-4)
    assert bounds["gauss"].item() == pytest.approx(spec.entropies()["gauss"] - expected_nll, abs=1e-4)


def test_uninformative_q_gives_zero_bound_for_categorical() -> None:
    spec = learned_std_spec()
    _, codes = spec.sample(256, generator=_gen(0), device="cpu")
    _, nll = spec.information_loss(torch.zeros(256, spec.q_dim), codes)  # uniform logits
    assert spec.lower_bounds(nll)["cat"].item() == pytest.approx(0.0, abs=1e-5)


def test_information_loss_is_weighted_sum_of_mean_nlls() -> None:
    spec = mnist_spec()
    _, codes = spec.sample(64, generator=_gen(1), device="cpu")
    q_out = torch.randn(64, spec.q_dim, generator=_gen(2))
    total, nll = spec.information_loss(q_out, codes)
    chunks = spec.split_q(q_out)
    manual = {slot.name: slot.q_loss.nll(chunk, code).mean() for slot, chunk, code in zip(spec.slots, chunks, codes)}
    assert set(nll) == {"digit", "c2", "c3"}
    for name in manual:
        torch.testing.assert_close(nll[name], manual[name])
    torch.testing.assert_close(total, 1.0 * manual["digit"] + 0.1 * manual["c2"] + 0.1 * manual["c3"])
    custom, _ = spec.information_loss(q_out, codes, weights=[0.0, 1.0, 2.0])
    torch.testing.assert_close(custom, manual["c2"] + 2.0 * manual["c3"])
    assert total.dim() == 0 and total.dtype == torch.float32
    bf16_total, _ = spec.information_loss(q_out.bfloat16(), codes)
    assert bf16_total.dtype == torch.float32
    with pytest.raises(ValueError, match="weights"):
        spec.information_loss(q_out, codes, weights=[1.0])
    with pytest.raises(ValueError, match="code tensors"):
        spec.information_loss(q_out, codes[:2])


def test_gradient_flows_to_every_q_output() -> None:
    spec = learned_std_spec()
    _, codes = spec.sample(32, generator=_gen(3), device="cpu")
    q_out = torch.randn(32, spec.q_dim, generator=_gen(4)).requires_grad_()
    total, nll = spec.information_loss(q_out, codes)
    assert all(t.requires_grad for t in nll.values())
    total.backward()
    assert q_out.grad is not None
    assert (q_out.grad.abs().sum(dim=0) > 0).all(), "every Q output column should receive gradient"


def test_q_head_end_to_end() -> None:
    spec = mnist_spec()
    head = QHead(in_features=8 * 4 * 4, out_dim=spec.q_dim)
    features = torch.randn(16, 8, 4, 4, generator=_gen(5))
    q_out = head(features)
    assert q_out.shape == (16, spec.q_dim)
    assert head(features.flatten(1)).shape == (16, spec.q_dim)
    _, codes = spec.sample(16, generator=_gen(6), device="cpu")
    total, _ = spec.information_loss(q_out, codes)
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert isinstance(head.net[1], torch.nn.BatchNorm1d) and head.net[2].negative_slope == 0.1
    with pytest.raises(ValueError, match="expected 128 features per sample, got 100"):
        head(torch.randn(2, 100))
    with pytest.raises(ValueError, match="out_dim"):
        QHead(in_features=4, out_dim=0)


def test_no_host_sync_in_sample_and_information_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = learned_std_spec()

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync")

    for method in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, method, forbidden)
    _, codes = spec.sample(8, generator=_gen(0), device="cpu")
    total, nll = spec.information_loss(torch.randn(8, spec.q_dim), codes)
    spec.lower_bounds(nll)
    for slot, chunk in zip(spec.slots, spec.split_q(torch.randn(8, spec.q_dim))):
        slot.q_loss.stats(chunk)
        slot.q_loss.predict(chunk)


@pytest.mark.parametrize("slot_index", [0, 1, 2])
def test_traversal_inputs_only_swept_columns_vary(slot_index: int) -> None:
    spec = mnist_spec()
    n_rows = 3
    grid = spec.traversal_inputs(slot_index, n_rows=n_rows, generator=_gen(0), device="cpu")
    values = spec.slots[slot_index].code.traversal_values()
    n_values = values.shape[0]
    assert grid.shape == (n_rows * n_values, 74)
    start = [62, 72, 73][slot_index]
    swept = torch.zeros(74, dtype=torch.bool)
    swept[start : start + values.shape[1]] = True
    rows = grid.reshape(n_rows, n_values, 74)
    for row in rows:
        varies = (row != row[0]).any(dim=0)
        assert torch.equal(varies, swept)
        assert torch.equal(row[:, swept], values)
    assert not torch.equal(rows[0, 0, :62], rows[1, 0, :62]), "each row draws its own z"


def test_traversal_inputs_multi_dim_code_and_base() -> None:
    spec = LatentSpec(noise_dim=4, slots=[CodeSlot("c", Uniform(dim=3), GaussianNLLFixed(), 0.1)])
    base, _ = spec.sample(2, generator=_gen(1), device="cpu")
    grid = spec.traversal_inputs(0, n_rows=2, generator=_gen(9), device="cpu", base=base, dim_index=1, steps=7)
    rows = grid.reshape(2, 7, spec.input_dim)
    for r in range(2):
        varies = (rows[r] != rows[r, 0]).any(dim=0)
        assert varies.nonzero().flatten().tolist() == [5]  # noise 0..3, code dims 4..6 -> dim 1 is column 5
        assert torch.equal(rows[r][:, [0, 1, 2, 3, 4, 6]], base[r, [0, 1, 2, 3, 4, 6]].expand(7, 6))
    assert torch.allclose(rows[0, :, 5], torch.linspace(-2, 2, 7))
    with pytest.raises(ValueError, match="dim_index"):
        spec.traversal_inputs(0, n_rows=2, generator=_gen(0), device="cpu", dim_index=3)
    with pytest.raises(ValueError, match="slot_index"):
        spec.traversal_inputs(1, n_rows=2, generator=_gen(0), device="cpu")
    with pytest.raises(ValueError, match="base"):
        spec.traversal_inputs(0, n_rows=3, generator=_gen(0), device="cpu", base=base)


def test_entropies_and_describe() -> None:
    spec = mnist_spec()
    entropies = spec.entropies()
    assert entropies == pytest.approx({"digit": math.log(10), "c2": math.log(2), "c3": math.log(2)})
    described = json.loads(json.dumps(spec.describe()))
    assert {key: described[key] for key in ("noise_dim", "noise", "input_dim", "q_dim")} == {
        "noise_dim": 62,
        "noise": "uniform",
        "input_dim": 74,
        "q_dim": 12,
    }
    layout = described["slots"]
    assert [entry["name"] for entry in layout] == ["digit", "c2", "c3"]
    assert layout[0]["code"] == {"type": "categorical", "dim": 1, "k": 10}
    assert layout[0]["q_loss"] == {"name": "categorical_ce"} and layout[1]["lambda"] == 0.1
    assert [e["input_columns"] for e in layout] == [[62, 72], [72, 73], [73, 74]]
    assert [e["q_columns"] for e in layout] == [[0, 10], [10, 11], [11, 12]]
    assert mnist_spec("normal").describe()["noise"] == "normal"
    with pytest.raises(KeyError, match="nope"):
        spec.lower_bounds({"nope": torch.tensor(0.0)})


def _options_spec() -> LatentSpec:
    """Every built-in code type and Q loss, with options away from their defaults."""
    return LatentSpec(
        noise_dim=7,
        noise="normal",
        slots=[
            CodeSlot("digit", Categorical(k=4), CategoricalCE(), 0.7),
            CodeSlot("tilt", Uniform(low=-0.5, high=2.0), GaussianNLLFixed(std=0.5), 0.05),
            CodeSlot("pose", Gaussian(dim=2, mean=1.0, std=3.0), GaussianNLL(min_log_std=-3.0, max_log_std=1.0), 0.2),
        ],
    )


def test_from_description_rebuilds_the_same_spec() -> None:
    """describe() -> JSON -> from_description gives a spec that samples, splits and weighs exactly
    like the original: same layout, same draws from the same generator, same loss."""
    spec = _options_spec()
    text = json.dumps(spec.describe())
    rebuilt = LatentSpec.from_description(text)
    assert rebuilt.describe() == spec.describe()
    assert rebuilt.noise == "normal" and rebuilt.slots[1].q_loss.std == 0.5 and rebuilt.slots[2].code.dim == 2
    a_input, a_codes = spec.sample(16, generator=_gen(3), device="cpu")
    b_input, b_codes = rebuilt.sample(16, generator=_gen(3), device="cpu")
    assert torch.equal(a_input, b_input) and all(torch.equal(a, b) for a, b in zip(a_codes, b_codes))
    q_out = torch.randn(16, spec.q_dim, generator=_gen(4))
    assert torch.equal(spec.information_loss(q_out, a_codes)[0], rebuilt.information_loss(q_out, b_codes)[0])
    assert LatentSpec.from_description(spec.describe()).describe() == spec.describe()  # a dict too
    spec.check_description(text)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(noise="uniform"), 'noise: "uniform" in the description, "normal" in this spec'),
        (lambda d: d.update(noise_dim=8), "noise_dim: 8 in the description, 7 in this spec"),
        (lambda d: d["slots"][1]["q_loss"].update(std=1.0), "slots[1].q_loss.std: 1.0 in the description, 0.5"),
        (lambda d: d["slots"][0].update(name="class"), "slots[0].name"),
        (lambda d: d["slots"].pop(), "2 entries"),
        (lambda d: d["slots"][2].update(q_columns=[6, 10]), "slots[2].q_columns"),
    ],
)
def test_check_description_names_the_first_difference(change, message) -> None:
    spec = _options_spec()
    description = json.loads(json.dumps(spec.describe()))
    change(description)
    with pytest.raises(ValueError, match=re.escape(message)):
        spec.check_description(description)


def test_from_description_refuses_what_it_cannot_rebuild() -> None:
    good = _options_spec().describe()
    cases = [
        ({**good, "slots": [{**good["slots"][0], "code": {"type": "vonmises", "dim": 1}}]}, "unknown latent code"),
        ({**good, "slots": [{**good["slots"][1], "q_loss": {"name": "gaussian_nll_fixed", "std": -1.0}}]}, "std"),
        ({**good, "slots": [{**good["slots"][1], "q_loss": {"name": "gaussian_nll_fixed", "wide": 2}}]}, "wide"),
        ({key: value for key, value in good.items() if key != "noise"}, "noise is missing"),
        (
            {**good, "slots": [{**good["slots"][0], "input_columns": [0, 4]}, *good["slots"][1:]]},
            "slots[0].input_columns",
        ),
        (good["slots"], "wrap it"),  # the list describe() returned before it recorded the noise
        ("{not json", "not JSON"),
    ]
    for description, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            LatentSpec.from_description(description)


def test_from_description_with_a_third_party_code_type() -> None:
    """A code type from another plugin is found in the registries passed in."""
    from registry import Host

    host = Host.create(["infogan", "tests.plugins.poisson_count"])
    count = host.registries.latent_codes.get("poisson")
    [code] = count.from_spec(None, {})
    loss = host.registries.q_losses.get(count.default_q_loss)()
    spec = LatentSpec(noise_dim=3, slots=[CodeSlot("n", code, loss, 0.1)])
    assert LatentSpec.from_description(spec.describe(), registries=host.registries).describe() == spec.describe()
    with pytest.raises(ValueError, match="poisson"):
        LatentSpec.from_description(spec.describe())


def test_spec_validation() -> None:
    slot = CodeSlot("a", Uniform(), GaussianNLLFixed(), 0.1)
    with pytest.raises(ValueError, match="unique.*'a'"):
        LatentSpec(noise_dim=2, slots=[slot, slot])
    with pytest.raises(ValueError, match="slots"):
        LatentSpec(noise_dim=2, slots=[])
    with pytest.raises(ValueError, match="noise_dim"):
        LatentSpec(noise_dim=-1, slots=[slot])
    with pytest.raises(ValueError, match="categorical_ce.*uniform"):
        CodeSlot("b", Uniform(), CategoricalCE(), 1.0)
    with pytest.raises(ValueError, match="lam"):
        CodeSlot("b", Uniform(), GaussianNLLFixed(), -0.1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("categorical:10", ("categorical", 10, {})),
        ("uniform:2", ("uniform", 2, {})),
        ("uniform:2,low=-1,high=1,lambda=0.05", ("uniform", 2, {"low": "-1", "high": "1", "lambda": "0.05"})),
        ("gaussian:1,std=0.5,loss=gaussian_nll_fixed", ("gaussian", 1, {"std": "0.5", "loss": "gaussian_nll_fixed"})),
        ("bernoulli", ("bernoulli", None, {})),
        (" uniform : 3 , low = 0 ", ("uniform", 3, {"low": "0"})),
        ("bernoulli,p=0.3", ("bernoulli", None, {"p": "0.3"})),
    ],
)
def test_parse_code_spec_good(text: str, expected: tuple) -> None:
    assert parse_code_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "missing code type"),
        ("   ", "missing code type"),
        (":3", "not a name"),
        ("uniform:two", "'two' is not a whole number"),
        ("uniform:2.5", "not a whole number"),
        ("uniform:-1", "not a whole number"),
        ("uniform:", "not a whole number"),
        ("categorical:0", "size must be >= 1"),
        ("uniform:2,low", "'low' has no '='"),
        ("uniform:2,=1", "key and a value"),
        ("uniform:2,low=", "key and a value"),
        ("uniform:2,low=1,low=2", "'low' given more than once"),
        ("uniform:2,,low=1", "has no '='"),
    ],
)
def test_parse_code_spec_bad(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_code_spec(text)
    message = str(info.value)
    assert repr(text) in message, "the message should quote the spec"
    assert "TYPE[:N][,key=value...]" in message
    assert reason in message
