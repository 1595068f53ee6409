"""The official tinker SDK (0.38), unmodified, against the stand-in (`retrain tinker serve`):
a training step changes the weights, a new sampler follows them, an old one keeps its snapshot,
save_state / load round-trips, and what the stand-in lacks is refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest

tinker = pytest.importorskip("tinker")

from tinker_helpers import KEY  # noqa: E402

PROMPT = [5, 6, 7, 8]


def datum(completion: list[int], sampling_lp: list[float], advantages: list[float]):
    full = PROMPT + completion
    pad = [0.0] * (len(PROMPT) - 1)  # prompt positions carry no loss
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(full[:-1]), loss_fn_inputs={
        "target_tokens": np.asarray(full[1:], dtype=np.int64),
        "logprobs": np.asarray(pad + sampling_lp, dtype=np.float32),
        "advantages": np.asarray(pad + advantages, dtype=np.float32)})


def sample(sampler, seed: int = 3):
    params = tinker.SamplingParams(max_tokens=5, temperature=1.0, seed=seed)
    return sampler.sample(prompt=tinker.ModelInput.from_ints(PROMPT), num_samples=2, sampling_params=params).result()


def completion_logprobs(client, completion: list[int]) -> np.ndarray:
    """The trainer's logprobs of ``completion`` after PROMPT (a forward pass, no gradient)."""
    out = client.forward([datum(completion, [0.0] * len(completion), [0.0] * len(completion))],
                         "importance_sampling").result()
    return np.asarray(out.loss_fn_outputs[0]["logprobs"].tolist())[len(PROMPT) - 1:]


@pytest.fixture(scope="module")
def service(standin):
    client = tinker.ServiceClient(base_url=standin, api_key=KEY)
    yield client
    client.close("success").result(timeout=30)  # finishes the session: the SDK's heartbeat thread stops


def test_a_training_step_changes_the_weights_and_the_sampler_follows(service, tiny_model):
    client = service.create_lora_training_client(base_model=str(tiny_model), rank=4, seed=0).result()
    assert client.get_info().lora_rank == 4
    before = service_sampler = client.save_weights_and_get_sampling_client().result()
    first = sample(before)
    seq = first.sequences[0]
    assert len(seq.tokens) == len(seq.logprobs) > 0
    # on-policy: the sampler's logprobs are the trainer's (same weights, temperature 1)
    trainer_lp = completion_logprobs(client, seq.tokens)
    assert np.allclose(trainer_lp, seq.logprobs, atol=1e-5)

    # importance_sampling with q = the trainer's logprobs: loss = -sum(exp(0) * A) = -sum(A), by hand
    adv = [1.0, -0.5, 0.25, 0.0, 2.0][:len(seq.tokens)]
    fb = client.forward_backward([datum(seq.tokens, seq.logprobs, adv)], "importance_sampling").result()
    assert fb.metrics["loss:sum"] == pytest.approx(-sum(adv), abs=1e-4)
    step = client.optim_step(tinker.AdamParams(learning_rate=0.05)).result()
    assert step.metrics["grad_norm"] > 0

    after_lp = completion_logprobs(client, seq.tokens)
    moved = np.abs(after_lp - trainer_lp)
    assert moved.max() > 1e-2  # the weights changed
    assert after_lp[0] > trainer_lp[0]  # the token with advantage +1 became more likely
    # a new sampler serves the new weights; the old one keeps its snapshot
    after = client.save_weights_and_get_sampling_client().result()
    new = sample(after)
    assert np.allclose(completion_logprobs(client, new.sequences[0].tokens), new.sequences[0].logprobs, atol=1e-5)
    again = sample(service_sampler)
    assert [s.tokens for s in again.sequences] == [s.tokens for s in first.sequences]
    assert np.allclose(again.sequences[0].logprobs, seq.logprobs, atol=1e-6)


def test_save_state_and_a_client_from_it_continue_the_same_weights(service, tiny_model):
    client = service.create_lora_training_client(base_model=str(tiny_model), rank=4, seed=1).result()
    client.forward_backward([datum([9, 10, 11], [-4.6] * 3, [1.0, 1.0, 1.0])], "ppo").result()
    client.optim_step(tinker.AdamParams(learning_rate=0.05)).result()
    path = client.save_state("after-one-step").result().path
    assert path == f"tinker://{client.model_id}/weights/after-one-step"
    restored = service.create_training_client_from_state_with_optimizer(path).result()
    assert restored.model_id != client.model_id
    saved = completion_logprobs(client, [9, 10, 11])
    assert np.array_equal(completion_logprobs(restored, [9, 10, 11]), saved)
    # the deprecated in-place load_state takes a model back to the saved weights
    client.forward_backward([datum([9, 10, 11], [-4.6] * 3, [1.0, 1.0, 1.0])], "ppo").result()
    client.optim_step(tinker.AdamParams(learning_rate=0.05)).result()
    assert not np.array_equal(completion_logprobs(client, [9, 10, 11]), saved)
    with pytest.warns(FutureWarning):
        client.load_state(path).result()
    assert np.array_equal(completion_logprobs(client, [9, 10, 11]), saved)


def test_what_the_standin_lacks_is_refused_by_name(service, tiny_model):
    client = service.create_lora_training_client(base_model=str(tiny_model), rank=2).result()
    with pytest.raises(tinker.RequestFailedError, match="loss_fn 'dro' is not implemented by the stand-in"):
        client.forward_backward([datum([9], [-4.6], [1.0])], "dro").result()
    with pytest.raises(Exception, match="is not served here"):
        service.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=2).result()
