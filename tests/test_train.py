"""Training: loss falls, interrupted runs resume to the same weights, bad checkpoints are named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import data_dir

from mars_ray.cli import cli
from mars_ray.lmm.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from mars_ray.lmm.corpus import Unit, corpus_table, lobster_orders, write_corpus
from mars_ray.lmm.dataset import fit_tokenizer, weighted_sample
from mars_ray.lmm.tokenizer import Tokenizer, mirror
from mars_ray.lmm.train import TrainConfig, Trainer, TrainingData, load_training_data


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The excerpt day twice: once to train on, once (as another 'day') to validate on."""
    folder = data_dir() / "lobster" / "excerpt"
    orders = lobster_orders(
        folder / "AAPL_2012-06-21_34200000_57600000_message_10.csv",
        folder / "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv",
    )
    parts = [
        (Unit("lobster", "AAPL", "2012-06-21", "train"), orders),
        (Unit("lobster", "AAPL", "2012-06-22", "validation"), orders),
    ]
    table = corpus_table(parts, {})
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(table, out, {})
    return out / "corpus.parquet"


def train_config(corpus: Path, out: Path, **optim: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "name": "tiny",
            "seed": 3,
            "corpus": str(corpus),
            "out": str(out),
            "device": "cpu",
            "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
            "optim": {
                "steps": 20,
                "batch_size": 8,
                "lr": 0.01,
                "warmup": 2,
                "eval_every": 10,
                "eval_windows": 8,
                "checkpoint_every": 5,
                **optim,
            },
        }
    )


def test_training_lowers_the_loss_and_writes_a_loadable_model(corpus: Path, tmp_path: Path):
    result = Trainer(train_config(corpus, tmp_path, steps=60, eval_every=30)).run()
    first, last = result.history[0], result.history[-1]
    assert last["validation_loss"] < first["validation_loss"]
    assert set(result.baselines["validation"]) == {"unigram", "markov"}
    loaded = load_model(tmp_path / "model.pt", device="cpu")
    assert loaded.meta["step"] == 60
    assert loaded.tokenizer.to_state() == read_checkpoint(tmp_path / "last.pt")["tokenizer"]


def test_a_source_embedding_run_ships_the_real_days_model(corpus: Path, tmp_path: Path):
    """model.source_embedding tags each window with its source; model.pt has the
    generate_as source folded in, so it loads and generates like any model and scores that
    source's windows as the tagged training model does."""

    def with_model(**model: object) -> TrainConfig:
        base = train_config(corpus, tmp_path, steps=4)
        return base.model_copy(update={"model": base.model.model_copy(update=model)})

    trainer = Trainer(with_model(source_embedding=True))
    assert trainer.model.config.n_sources == 2
    trainer.run()
    loaded = load_model(tmp_path / "model.pt", device="cpu")
    assert loaded.model.config.n_sources == 0 and loaded.meta["generates_as"] == "lobster"
    split = trainer.splits["validation"]
    x, book, _ = split.windows(split.eval_windows(16, 4), 16)
    tagged = trainer.model.eval().hidden(
        torch.from_numpy(x), torch.from_numpy(book), torch.zeros(len(x), dtype=torch.long)
    )
    plain = loaded.model.hidden(torch.from_numpy(x), torch.from_numpy(book))
    torch.testing.assert_close(plain, tagged, atol=1e-5, rtol=0)
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["generates_as"] == "lobster" and card["params"] == loaded.model.num_params()
    with pytest.raises(CheckpointError, match=r"source embedding .* model\.pt"):
        load_model(tmp_path / "last.pt", device="cpu")  # the unfolded training checkpoint

    with pytest.raises(ValueError, match=r"model\.generate_as='synthetic'"):
        Trainer(with_model(source_embedding=True, generate_as="synthetic"))


class Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_weights(corpus: Path, tmp_path: Path):
    straight = Trainer(train_config(corpus, tmp_path / "a"))
    straight.run()

    def stop_at_12(step: int, record: dict) -> None:
        if step == 12:
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(train_config(corpus, tmp_path / "b")).run(stop_at_12)
    assert read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 10  # the last save
    resumed = Trainer(train_config(corpus, tmp_path / "b"), resume=True)
    assert resumed.step == 10
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["validation_loss"] for h in straight.history] == [
        h["validation_loss"] for h in resumed.history
    ]


def test_given_training_data_trains_as_the_config_would(corpus: Path, tmp_path: Path):
    """Trainer(data=...) (what the scaling experiment uses to share one corpus between runs)
    gives the same weights as reading the corpus itself; resuming with data tokenized by
    another tokenizer is refused."""
    config = train_config(corpus, tmp_path / "a", steps=10, max_train_orders=600)
    data = load_training_data(config)
    assert data.splits["train"].orders == 600 and "validation" in data.splits
    given = Trainer(config, data=data)
    given.run()
    own = Trainer(train_config(corpus, tmp_path / "b", steps=10, max_train_orders=600))
    own.run()
    a, b = given.model.state_dict(), own.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert given.corpus_meta == own.corpus_meta

    other = load_training_data(train_config(corpus, tmp_path, max_train_orders=200))
    assert other.tokenizer.to_state() != data.tokenizer.to_state()
    mismatched = TrainingData(other.tokenizer, data.splits, data.corpus_meta)
    with pytest.raises(CheckpointError, match="another tokenizer"):
        Trainer(config, resume=True, data=mismatched)


def test_mirrored_windows_are_the_drawn_windows_seen_from_the_other_side(corpus: Path):
    """optim.mirrored swaps buy and sell in that share of windows, drawn per window from the
    step's generator, after the windows themselves: at 0 the batches are the ones a run
    without it drew."""
    split = load_training_data(train_config(corpus, Path("unused"))).splits["train"]
    plain = split.sample(np.random.default_rng(4), 64, 16)
    again = split.sample(np.random.default_rng(4), 64, 16, mirrored=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(plain, again, strict=True))
    x, book, y, sources = split.sample(np.random.default_rng(4), 64, 16, mirrored=0.5)
    assert (sources == "lobster").all()
    flipped = ~(x == plain[0]).all(axis=(1, 2))
    assert 16 < flipped.sum() < 48
    want_x, want_book = mirror(plain[0][flipped], plain[1][flipped])
    np.testing.assert_array_equal(x[flipped], want_x)
    np.testing.assert_array_equal(book[flipped], want_book)
    np.testing.assert_array_equal(y[flipped], mirror(plain[2][flipped], plain[1][flipped])[0])
    for got, want in zip((x, book, y), plain[:3], strict=True):
        np.testing.assert_array_equal(got[~flipped], want[~flipped])
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # targets still the next inputs
    with pytest.raises(ValueError, match="mirrored"):
        train_config(corpus, Path("unused"), mirrored=1.5)


def test_resume_refuses_a_different_model(corpus: Path, tmp_path: Path):
    Trainer(train_config(corpus, tmp_path, steps=5)).run()
    other = train_config(corpus, tmp_path).model_copy(
        update={"model": train_config(corpus, tmp_path).model.model_copy(update={"n_embd": 32})}
    )
    with pytest.raises(CheckpointError, match="model"):
        Trainer(other, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer(train_config(corpus, tmp_path / "empty"), resume=True)


def test_init_from_starts_from_the_pretrained_weights_and_tokenizer(corpus: Path, tmp_path: Path):
    """Fine-tuning: step 0 of an ``init_from`` run holds the pretrained weights and tokenizer,
    its card says what the start was trained on, and a config of another shape is refused
    naming the field."""
    Trainer(train_config(corpus, tmp_path / "pre", steps=10, max_train_orders=600)).run()
    pretrained = tmp_path / "pre" / "model.pt"
    config = train_config(corpus, tmp_path / "fine", steps=5).model_copy(
        update={"init_from": pretrained}
    )
    fine = Trainer(config)
    pre = read_checkpoint(pretrained)
    assert all(torch.equal(v, pre["model"][k]) for k, v in fine.model.state_dict().items())
    assert fine.tokenizer.to_state() == pre["tokenizer"]
    assert fine.tokenizer.to_state() != load_training_data(config).tokenizer.to_state()
    fine.run()
    card = read_checkpoint(tmp_path / "fine" / "model.pt")
    assert card["pretraining"]["steps"] == 10
    assert card["pretraining"]["corpus"]["max_train_orders"] == 600
    assert any(not torch.equal(v, pre["model"][k]) for k, v in card["model"].items())

    wider = config.model_copy(update={"model": config.model.model_copy(update={"n_embd": 32})})
    with pytest.raises(CheckpointError, match=r"model.n_embd: the config says 32.*16"):
        Trainer(wider)
    tagged = config.model_copy(
        update={"model": config.model.model_copy(update={"source_embedding": True})}
    )
    with pytest.raises(CheckpointError, match=r"model.source_embedding: the config says True"):
        Trainer(tagged)


def test_gaps_from_fits_the_time_bins_on_one_source_only(tmp_path: Path) -> None:
    """A slow real day and a ten-times-faster synthetic one: bins fitted on both cannot
    decode the real day's long gaps; bins fitted on the real day can."""
    folder = data_dir() / "lobster" / "excerpt"
    real = lobster_orders(
        folder / "AAPL_2012-06-21_34200000_57600000_message_10.csv",
        folder / "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv",
    )
    fast = dataclasses.replace(real, gap_ns=real.gap_ns // 10, time_ns=real.time_ns // 10)
    parts = [(Unit("lobster", "AAPL", "d1", "train"), real)]
    parts += [(Unit("synthetic", "AAPL", f"s{k}", "train"), fast) for k in range(4)]
    table = corpus_table(parts, {})
    both, own = fit_tokenizer(table), fit_tokenizer(table, "lobster")
    assert own.gap_values[-1] > 3 * both.gap_values[-1]
    assert own.gap_values[-1] == Tokenizer.fit(real.size, real.gap_ns).gap_values[-1]
    assert own.size_values.tolist() == both.size_values.tolist()  # sizes: every source
    with pytest.raises(ValueError, match="gaps_from: no training orders of source 'lob'"):
        fit_tokenizer(table, "lob")
    # weighted by the sampling mix: one real day x 4 against four synthetic days is an
    # even mix of the two, which reaches further than every order alike
    sources = table["source"].to_numpy(zero_copy_only=False)
    mix = weighted_sample(np.arange(len(sources)), sources, {"lobster": 4})
    real_rows = int((sources[mix] == "lobster").sum())
    assert real_rows == len(real) and len(mix) == 2 * len(real)
    weighted = fit_tokenizer(table, "weighted", {"lobster": 4})
    assert both.gap_values[-1] < weighted.gap_values[-1] < own.gap_values[-1]


def test_bad_checkpoints_are_named(corpus: Path, tmp_path: Path):
    Trainer(train_config(corpus, tmp_path, steps=5)).run()
    good = tmp_path / "model.pt"
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")
    torn = tmp_path / "torn.pt"
    torn.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(torn)
    raw = read_checkpoint(good)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, {**raw, "model_config": {**raw["model_config"], "n_embd": 32}})
    with pytest.raises(CheckpointError, match="shape"):
        load_model(wrong)
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something-else"}, foreign)
    with pytest.raises(CheckpointError, match="format"):
        load_model(foreign)
    bad_tok = tmp_path / "badtok.pt"
    save_checkpoint(bad_tok, {**raw, "tokenizer": {**raw["tokenizer"], "size_edges": [3, 1]}})
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_model(bad_tok)


def test_train_command_reports_losses_and_config_errors(corpus: Path, tmp_path: Path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        f"name: tiny\ncorpus: {corpus}\nout: {tmp_path / 'run'}\ndevice: cpu\n"
        "model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n"
        "optim: {steps: 4, batch_size: 4, eval_every: 2, eval_windows: 4}\n"
    )
    result = CliRunner().invoke(cli, ["train", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "markov" in result.output and "validation" in result.output
    assert (tmp_path / "run" / "model.json").exists()
    cfg.write_text(f"corpus: {corpus}\nmodel: {{n_embd: 30, n_head: 4}}\n")
    result = CliRunner().invoke(cli, ["train", str(cfg)])
    assert result.exit_code != 0
    assert "model" in result.output and "30" in result.output
    assert "Traceback" not in result.output


def test_the_mqa_config_validates_and_builds_one_kv_head() -> None:
    from conftest import PROJECT_ROOT

    from mars_ray.lmm.train import load_train_config
    from mars_ray.schema.validation import ConfigError

    cfg = load_train_config(PROJECT_ROOT / "configs" / "lmm_mqa.yaml")
    assert cfg.model_config_().kv_heads == 1
    with pytest.raises(ConfigError, match="n_kv_head must divide n_head"):
        load_train_config(PROJECT_ROOT / "configs" / "lmm_mqa.yaml", {"model.n_kv_head": 3})


def test_input_embedding_std_reaches_the_model_and_is_checked() -> None:
    from conftest import PROJECT_ROOT

    from mars_ray.lmm.model import INIT_STD
    from mars_ray.lmm.train import ModelSection, load_train_config
    from mars_ray.schema.validation import ConfigError

    assert ModelSection().input_embedding_std == INIT_STD  # unset: the weights drawn before
    path = PROJECT_ROOT / "configs" / "lmm.yaml"
    assert load_train_config(path).model_config_().input_embedding_std == 1.0  # the shipped
    cfg = load_train_config(path, {"model.input_embedding_std": 0.5})
    assert cfg.model_config_().input_embedding_std == 0.5
    with pytest.raises(ConfigError, match="input_embedding_std") as info:
        load_train_config(path, {"model.input_embedding_std": -1})
    assert "-1" in str(info.value)


def test_fit_decoding_adds_the_inside_table_and_keeps_the_weights(corpus: Path, tmp_path: Path):
    Trainer(train_config(corpus, tmp_path / "run", steps=2)).run()
    model = tmp_path / "run" / "model.pt"
    raw = read_checkpoint(model)
    fitted = Tokenizer.from_state(raw["tokenizer"])
    assert fitted.inside is not None and fitted.spread_ticks and fitted.touch_rate
    raw["tokenizer"].pop("inside_fractions")  # a model trained before the tables existed
    raw["tokenizer"].pop("spread_ticks")
    raw["tokenizer"].pop("touch_rate")
    save_checkpoint(tmp_path / "old.pt", {k: v for k, v in raw.items() if k != "format"})
    result = CliRunner().invoke(
        cli,
        [
            "fit-decoding",
            str(tmp_path / "old.pt"),
            "--corpus",
            str(corpus),
            "--out",
            str(tmp_path / "new.pt"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "INSIDE depth quantiles" in result.output
    new = read_checkpoint(tmp_path / "new.pt")
    assert all(torch.equal(new["model"][k], raw["model"][k]) for k in raw["model"])
    # the table a training run on the same corpus fits, and nothing else changed
    assert Tokenizer.from_state(new["tokenizer"]) == fitted
    card = (tmp_path / "new.json").read_text()
    assert "inside_fractions" in card and "spread_ticks" in card and str(corpus) in card
    assert "touch_rate" in card and "orders a second at the touch" in result.output
    missing = CliRunner().invoke(
        cli, ["fit-decoding", str(tmp_path / "nowhere.pt"), "--out", str(tmp_path / "x.pt")]
    )
    assert missing.exit_code != 0 and "checkpoint not found" in missing.output
