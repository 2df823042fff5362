"""The Python bindings (python/ncas) against the demo model, through libncas ($NCAS_LIB).

Run: NCAS_LIB=build/release/libncas.so /usr/bin/python3 -m pytest -q python/tests
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import ncas  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "models", "demo-q8_0.gguf")
TINY = os.path.join(ROOT, "tests", "data", "tiny", "base_f32.gguf")
GREEDY = dict(temperature=0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def model():
    with ncas.Model(DEMO) as m:
        yield m


def test_version():
    assert ncas.version().count(".") == 2


def test_a_missing_model_is_an_error_naming_it():
    with pytest.raises(ncas.Error, match="/nonexistent/model.gguf"):
        ncas.Model("/nonexistent/model.gguf")


def test_tokenize_round_trip(model):
    text = "Hello world, here is ünïcode ✓"
    ids = model.tokenize(text, add_bos=False)
    assert ids and all(0 <= i < model.n_vocab for i in ids)
    assert model.detokenize(ids) == text
    if model.bos >= 0:
        assert model.tokenize(text)[0] == model.bos


def test_generate_equals_the_greedy_loop(model):
    s = model.session(n_ctx=256, n_threads=1)
    ids = model.tokenize("Once upon a time")
    s.prefill(ids)
    want = []
    for _ in range(20):
        logits = s.logits()
        nxt = max(range(len(logits)), key=lambda i: (logits[i], -i))
        want.append(nxt)
        s.decode(nxt)
    s2 = model.session(n_ctx=256, n_threads=1)
    g = s2.generate("Once upon a time", max_tokens=20, ignore_eos=True, **GREEDY)
    pieces = list(g)
    assert len(pieces) > 1
    assert "".join(pieces) == model.detokenize(want)
    assert g.finish == "length"
    assert g.usage["completion_tokens"] == 20 and g.usage["prompt_tokens"] == len(ids)


def test_a_seed_repeats_and_the_cache_is_reused(model):
    s = model.session(n_ctx=256, n_threads=1)
    a = s.generate("The little dog", max_tokens=24, seed=42).text()
    g = s.generate("The little dog", max_tokens=24, seed=42)
    assert g.text() == a
    assert g.usage["cached_tokens"] == g.usage["prompt_tokens"] - 1
    fresh = model.session(n_ctx=256, n_threads=1).generate("The little dog", max_tokens=24, seed=42).text()
    assert fresh == a


def test_a_stop_string_cuts_the_text(model):
    s = model.session(n_ctx=256, n_threads=1)
    full = s.generate("The little dog", max_tokens=30, ignore_eos=True, **GREEDY).text()
    assert len(full) > 8
    stop = full[4:7]
    g = s.generate("The little dog", max_tokens=30, stop=[stop], **GREEDY)
    assert g.text() == full[: full.index(stop)]
    assert g.finish == "stop"


def test_leaving_the_loop_early_cancels(model):
    s = model.session(n_ctx=256, n_threads=1)
    g = s.generate("Once upon a time", max_tokens=200, ignore_eos=True, seed=1)
    for i, _ in enumerate(g):
        if i == 2:
            break
    g.close()
    assert g.finish == "cancelled"
    assert g.usage["completion_tokens"] < 200
    # The session goes on working.
    assert s.generate("Once", max_tokens=3, ignore_eos=True, seed=1).text()


def test_chat(model):
    msgs = [{"role": "user", "content": "Hello, who are you?"}]
    assert model.apply_chat_template(msgs) == "User: Hello, who are you?\nAssistant:"
    assert model.apply_chat_template(msgs, format="chatml").startswith("<|im_start|>user\n")
    s = model.session(n_ctx=256, n_threads=1)
    g = s.chat(msgs, max_tokens=40, seed=3)
    reply = g.text()
    assert "\nUser:" not in reply
    assert g.finish in ncas.FINISH_REASONS


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(ncas.Error, match="chatml, llama-2, llama-3, mistral, plain"):
        model.apply_chat_template([{"role": "user", "content": "x"}], format="vicuna")
    with pytest.raises(ncas.Error, match="role 'robot'"):
        model.apply_chat_template([{"role": "robot", "content": "x"}])
    with pytest.raises(ncas.Error, match="no messages"):
        model.apply_chat_template([])
    with pytest.raises(ncas.Error, match="needs a 'role'"):
        model.apply_chat_template([{"content": "x"}])
    small = model.session(n_ctx=4, n_threads=1)
    with pytest.raises(ncas.Error, match="shorter than the context"):
        small.generate("one two three four five six seven", max_tokens=2).text()
    with pytest.raises(ncas.Error, match="top_p"):
        small.generate("x", top_p=0).text()
    with pytest.raises(ncas.Error, match="q9"):
        model.session(kv_type="q9")


def test_session_state_round_trip(model, tmp_path):
    s = model.session(n_ctx=256, n_threads=1)
    s.generate("The old man and the sea", max_tokens=10, ignore_eos=True, **GREEDY).text()
    path = tmp_path / "prompt.state"
    s.save(path)
    s2 = model.session(n_ctx=256, n_threads=1)
    s2.load(path)
    assert s2.n_past == s.n_past
    g = s2.generate("The old man and the sea", max_tokens=10, **GREEDY)
    assert g.text() == s.generate("The old man and the sea", max_tokens=10, **GREEDY).text()
    assert g.usage["cached_tokens"] == g.usage["prompt_tokens"] - 1
    with ncas.Model(TINY) as tiny:
        t = tiny.session()
        t.prefill([1, 2])
        other = tmp_path / "tiny.state"
        t.save(other)
        with pytest.raises(ncas.Error, match="another model"):
            s2.load(other)
    assert s2.n_past == 0
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ncas.Error, match="truncated"):
        s2.load(path)
