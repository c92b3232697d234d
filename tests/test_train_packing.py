"""Sequence packing (train.packing) is exact: on the tiny models and the demo's batches, the packed loss and
gradients equal the padded ones, the supervised tokens are the same, and a packed run logs the losses of a
padded one while computing no padding position.

Tolerance, float32 on CPU: loss rel 1e-6; every trainable gradient within 1e-5 of the padded one relative to
that tensor's largest entry (the only difference is float summation order). Dropout is off where values
are compared: it draws its masks over a different tensor layout.

Run: pytest tests/test_train_packing.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imp_data.train.loop import forward_loss, make_run_loader, train
from imp_data.train.packing import pack_rows, position_counts
from imp_data.train.summary import summarize_run
from imp_data.train.template import IGNORE_INDEX
from tests.test_train_loop import setup
from tests.train_support import RUNS, demo_data_root, one_thread  # noqa: F401 (autouse fixture)

CPU = torch.device("cpu")
NO_DROPOUT = ["lora.dropout=0.0", "train.batch_size=4"]


@pytest.fixture(scope="module")
def data_root(demo_build, tmp_path_factory) -> Path:
    return demo_data_root(demo_build[0], tmp_path_factory.mktemp("packing"))


def batches(stage_yaml: str, data_root: Path, n: int, *overrides: str):
    cfg, tokenizer, model = setup(stage_yaml, data_root, *NO_DROPOUT, *overrides)
    with torch.no_grad():  # LoRA's B starts at zero: give it values so the A matrices get gradients too
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    loader = iter(make_run_loader(cfg, tokenizer, model, data_root))
    return model, [next(loader) for _ in range(n)]


def loss_and_grads(model, batch, packed: bool) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = forward_loss(model, batch, CPU, packed=packed)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("stage_yaml", "checkpointing"), [("tiny_stage1.yaml", False), ("tiny_stage2.yaml", False),
                                                           ("tiny_stage2.yaml", True)])
def test_packed_loss_and_gradients_equal_padded(stage_yaml, checkpointing, data_root):
    """Also under gradient checkpointing (the imp3b recipes'): the recomputed forward must see the segments."""
    model, chosen = batches(stage_yaml, data_root, 3, f"train.gradient_checkpointing={str(checkpointing).lower()}")
    model.train()
    padded_rows = 0
    for batch in chosen:
        real, computed, _ = position_counts(batch, model.num_patches, packed=False)
        padded_rows += computed > real
        loss_a, grads_a = loss_and_grads(model, batch, packed=False)
        loss_b, grads_b = loss_and_grads(model, batch, packed=True)
        assert loss_b == pytest.approx(loss_a, rel=1e-6)
        assert grads_a.keys() == grads_b.keys() and len(grads_a) >= 4
        for name, grad in grads_a.items():
            scale = grad.abs().max().item()
            assert scale > 0, f"{name}: no gradient to compare"
            assert (grads_b[name] - grad).abs().max().item() <= 1e-5 * scale, name
    assert padded_rows, "the batches compared must hold rows of different lengths"


def test_packed_labels_are_the_padded_ones(data_root):
    """The same (sample, position) targets are supervised: image positions and instructions masked alike,
    and no target spans two samples."""
    model, (batch,) = batches("tiny_stage2.yaml", data_root, 1)
    model.eval()
    with torch.no_grad():
        embeds, mask, labels = model.embed(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                           batch["pixel_values"])
        rows, row_labels = model.splice(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                        batch["pixel_values"])
        packed = pack_rows(rows, row_labels)
    bounds = packed["segments"]
    assert len(bounds) == len(batch["input_ids"]) + 1 and packed["inputs_embeds"].shape[1] == int(mask.sum())
    for b in range(len(rows)):
        n = int(mask[b].sum())
        a, z = bounds[b], bounds[b + 1]
        assert z - a == n
        assert torch.equal(packed["inputs_embeds"][0, a:z], embeds[b, :n])
        assert packed["position_ids"][0, a:z].tolist() == list(range(n))
        # what the loss uses: the label of every position but the first (the loss shifts by one)
        assert torch.equal(packed["labels"][0, a + 1:z], labels[b, 1:n])
        assert packed["labels"][0, a] == IGNORE_INDEX
        assert (labels[b, n:] == IGNORE_INDEX).all()  # the padded row's tail supervises nothing
    supervised = (packed["labels"][0] != IGNORE_INDEX).sum()
    assert supervised == sum(int((labels[b, 1:] != IGNORE_INDEX).sum()) for b in range(len(rows))) > 0


def test_packed_run_logs_padded_losses_without_padding(data_root):
    """A short stage-2 run with packing logs the padded run's losses step for step (same batches, same
    order), a padding share of 0 where the padded run's is above 0, and an ETA."""
    common = ["train.epochs=1", "train.max_steps=4", "model.init_projector=null", "lora.dropout=0.0",
              "train.batch_size=6"]
    logs = {}
    for packing in (False, True):
        run = train(RUNS / "tiny_stage2.yaml", data_root=data_root,
                    overrides=common + [f"name=pack_{packing}", f"train.packing={str(packing).lower()}"])
        logs[packing] = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs[True]] == [1, 2, 3, 4]
    assert [r["loss"] for r in logs[True]] == pytest.approx([r["loss"] for r in logs[False]], rel=1e-5)
    assert all(r["padding_share"] == 0 for r in logs[True])
    assert all(r["padding_share"] > 0 for r in logs[False])
    assert all(r["eta_s"] >= 0 for r in logs[True]) and logs[True][-1]["eta_s"] == 0
    assert all(r["tokens_per_s"] > 0 and r["samples_per_s"] > 0 for r in logs[True])
    summary = summarize_run(data_root / "runs" / "pack_True")  # what the Dagster checkpoint asset reports
    assert summary["padding_share"] == 0 and summary["tokens_per_s"] > 0 and summary["eta_s"] == 0
    assert summarize_run(data_root / "runs" / "pack_False")["padding_share"] > 0
