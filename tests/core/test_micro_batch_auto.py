"""``micro_batch_size = "auto"`` on a GPU (retrain.backends.micro_batch): the whole batch when its activations fit,
else the most rows that do. The estimate's numbers are checked by hand; the GPU path itself runs only on a GPU."""

from __future__ import annotations

from types import SimpleNamespace

from retrain.backends.micro_batch import BUDGET_FRACTION, activation_bytes_per_token, rows_that_fit

QWEN_05B = SimpleNamespace(num_hidden_layers=24, hidden_size=896, intermediate_size=4864)
SMOLLM2_135M = SimpleNamespace(num_hidden_layers=30, hidden_size=576, intermediate_size=1536)
H100_FREE = 78 * 2**30


def test_activation_bytes_per_token_by_hand():
    assert activation_bytes_per_token(QWEN_05B, 2) == 24 * (18 * 896 + 6 * 4864) * 2 == 2_174_976
    assert activation_bytes_per_token(SMOLLM2_135M, 2) == 30 * (18 * 576 + 6 * 1536) * 2 == 1_175_040
    assert activation_bytes_per_token(SimpleNamespace(num_hidden_layers=2, hidden_size=8), 4) == 2 * (144 + 192) * 4
    assert activation_bytes_per_token(None, 2) == 0  # no sizes: no estimate


def test_long_rows_of_a_half_billion_model_are_split_where_they_ran_out_of_memory():
    budget = BUDGET_FRACTION * H100_FREE  # 67.0e9 bytes
    # 128 rows of 128 + 1,024 tokens: 67.0e9 // (2,174,976 x 1,152 = 2.51e9) = 26 rows (32 ran out of memory on an H100)
    assert rows_that_fit(128, 1152, 2_174_976, budget) == 26
    # 256-token completions: 67.0e9 // (2,174,976 x 384) = 80 rows
    assert rows_that_fit(128, 384, 2_174_976, budget) == 80


def test_the_default_run_trains_its_whole_batch_on_a_gpu():
    # 128 rows x (145 prompt + 24 completion) tokens x 1,175,040 B = 23.7 GiB < 62.4 GiB: one micro-batch
    assert rows_that_fit(128, 169, 1_175_040, BUDGET_FRACTION * H100_FREE) == 128


def test_at_least_one_row_and_no_estimate_means_the_whole_batch():
    assert rows_that_fit(64, 100_000, 2_174_976, 1e9) == 1  # nothing fits: one row at a time, the least there is
    assert rows_that_fit(64, 100, 0, 1e9) == 64
