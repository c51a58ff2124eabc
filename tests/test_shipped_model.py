"""The shipped order model, scored on real data it never saw (not read from its card)."""

from __future__ import annotations

import pytest
import torch
from conftest import data_dir

from mars_ray.lmm.baselines import MarkovBaseline, UnigramBaseline
from mars_ray.lmm.checkpoint import SHIPPED, load_model
from mars_ray.lmm.corpus import Unit, corpus_table, lobster_orders
from mars_ray.lmm.dataset import TokenSplit, tokenize
from mars_ray.lmm.model import OrderModel
from mars_ray.lmm.tokenizer import token_ids


def held_out_nll(model: OrderModel, days: dict[str, TokenSplit]) -> float:
    """The model's NLL per order (nats) on 64 windows of the real AAPL day."""
    block = model.config.block_size
    x, book, y = days["AAPL"].windows(days["AAPL"].eval_windows(block, 64), block)
    with torch.no_grad():
        _, loss = model(torch.from_numpy(x), torch.from_numpy(book), torch.from_numpy(y))
    return float(loss)


def test_the_shipped_model_beats_both_baselines_on_the_held_out_real_day() -> None:
    """Scored here, not read from its card: the AAPL day (the corpus's real test day, never
    trained on) against a unigram and a Markov chain fitted on the real GOOG day, on the
    same (previous, next) pairs. A fresh, untrained model of the same shape fails it."""
    assert SHIPPED.stat().st_size <= 20 * 2**20
    loaded = load_model(device="cpu")
    root = data_dir() / "lobster"
    days = {}
    for ticker, levels, split in (("GOOG", 10, "train"), ("AAPL", 1, "test")):
        stem = f"{ticker}_2012-06-21_34200000_57600000_{{}}_{levels}.csv.gz"
        orders = lobster_orders(root / stem.format("message"), root / stem.format("orderbook"))
        table = corpus_table([(Unit("lobster", ticker, "2012-06-21", split), orders)], {})
        days[ticker] = tokenize(table, loaded.tokenizer)
    block = loaded.model.config.block_size
    prev, nxt = days["AAPL"].pairs(days["AAPL"].eval_windows(block, 64), block)
    train_ids = token_ids(days["GOOG"].components)
    markov = MarkovBaseline(train_ids, days["GOOG"].starts).nll(prev, nxt)
    unigram = UnigramBaseline(train_ids).nll(prev, nxt)
    model_nll = held_out_nll(loaded.model, days)
    # With the real day's fine time bins the Markov chain overfits one day (it scores
    # worse than the unigram on the other): the bar is the better of the two.
    bar = min(markov, unigram)
    assert model_nll < bar, (model_nll, markov, unigram)
    torch.manual_seed(0)
    untrained = OrderModel(loaded.model.config).eval()
    assert held_out_nll(untrained, days) > bar


def test_the_shipped_model_decodes_inside_orders_as_the_real_training_day_placed_them() -> None:
    """Its decoding tables are those of the GOOG day (what `mars-ray fit-decoding` wrote,
    recomputed here from the file): how deep its INSIDE orders went, its median spread,
    its orders a second at the touch, its orders' share per size bin."""
    import numpy as np

    from mars_ray.lmm.dataset import (
        decoding_inputs,
        inside_depths,
        training_spread,
        training_touch_rate,
    )
    from mars_ray.lmm.tokenizer import inside_fractions

    loaded = load_model(device="cpu")
    stem = "GOOG_2012-06-21_34200000_57600000_{}_10.csv.gz"
    root = data_dir() / "lobster"
    orders = lobster_orders(root / stem.format("message"), root / stem.format("orderbook"))
    table = corpus_table([(Unit("lobster", "GOOG", "2012-06-21", "train"), orders)], {})
    want = inside_fractions(*inside_depths(table))
    assert loaded.tokenizer.inside is not None
    assert np.allclose(loaded.tokenizer.inside, want)
    assert loaded.tokenizer.inside[8] > 0  # the median order goes more than one tick in
    assert loaded.tokenizer.spread_ticks == training_spread(table) == 28.0
    # 43,886 of its 142,320 orders reached the touch, over the day's 6.5 hours
    assert loaded.tokenizer.touch_rate == pytest.approx(training_touch_rate(table))
    assert loaded.tokenizer.touch_rate == pytest.approx(43_886 / 23_400, rel=0.01)
    sizes = decoding_inputs(table)[3]
    mix = loaded.tokenizer.with_decoding(None, None, None, sizes).size_mix
    assert loaded.tokenizer.size_mix is not None and mix is not None
    assert np.allclose(loaded.tokenizer.size_mix, mix)
    assert loaded.tokenizer.size_mix[7] == pytest.approx(0.479, abs=0.001)  # 100 shares
