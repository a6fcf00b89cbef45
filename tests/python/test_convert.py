"""tools/convert_checkpoint.py on stand-ins with the public checkpoints' exact structure.

References are the libraries that define the formats, not code of ours: TransformerLens builds
the paper's architecture (HookedTransformer, random weights, no download) and `transformers`
builds GPT-2; `lpe forward` on the converted file must give their last-position logits.

Stand-ins: a TransformerLens state dict with the key set of NeelNanda/GELU_*L512W_C4_Code's
model_final.pth (no unembed.b_U; attn.mask [n_ctx, n_ctx] bool and attn.IGNORE buffers) and its
config.json fields, scaled down; a GPT-2 save_pretrained directory (safetensors), a
pytorch_model.bin with "transformer." keys, and the original hub layout (no prefix, attn.bias
buffers); a byte-level BPE tokenizer file with the neox-digits specials (EOS 0, BOS 1, PAD 2)
and digits split, trained on text whose characters split across tokens.

Tolerance: lpe computes in float32 (LayerNorm statistics and softmax sums in float64) as do the
references, in different orders; each logit is a sum of O(d_model) products through 2 layers,
so agreement is a few float32 ulps of the logits' scale: |lpe - ref| <= 2e-5 * max|ref| +
1e-4 |ref| (as tests/python/test_forward.py). Weights are scaled so logits are O(1) and a wrong
term (a bias, a transposed head split, a missing LayerNorm) moves them by >= 1e-2 * scale;
test_tolerance_catches_a_wrong_head_split shows the check fails on such a mistake.
"""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

def _need(mod):
    """Import a heavy dependency or FAIL (tools/requirements-tools.txt lists them): these tests
    must run in CI, never skip silently."""
    import importlib
    try:
        return importlib.import_module(mod)
    except ImportError as e:
        pytest.fail(f"{mod} is not installed ({e}); run tools/setup.sh (tools/requirements-tools.txt)")


ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_checkpoint as cc  # noqa: E402
from conftest import run_lpe  # noqa: E402

torch = _need("torch")
ATOL, RTOL = 2e-5, 1e-4
SPECIALS = ["<|endoftext|>", "<|BOS|>", "<|PAD|>"]  # ids 0, 1, 2 as in gpt-neox-tokenizer-digits
TEXT = ["The quick brown fox jumps over the lazy dog. " * 3,
        "El niño comió piñas en España, ¿verdad? Sí, señor.",
        "def foo(x):\n    return x + 1  # 12345\n",
        "emoji 😀 and 中文 text 67890 ÀÉÎÕÜ"] * 20


def close(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    err = np.abs(got - want)
    bound = ATOL * np.abs(want).max() + RTOL * np.abs(want)
    assert np.all(err <= bound), f"{what}: max error {err.max():.3g} (scale {np.abs(want).max():.3g})"


def convert(*args):
    """Run the converter in-process: (exit code, stderr text)."""
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cc.main([str(a) for a in args])
    return rc, err.getvalue()


def lpe_logits(model, tokens):
    r = run_lpe("forward", "--model", model, "--tokens", ",".join(map(str, tokens)), "--logits",
                check=0)
    return np.array(json.loads(r.stdout)["logits"])


# ---- stand-ins ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    tk = _need("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers
    tok = tk.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT, tr)
    p = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(p))
    return p


def _randomise(named_params, seed):
    """Non-trivial weights for every tensor (the libraries zero biases and set LN to 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in named_params:
            last = n.split(".")[-1]
            if last in ("w", "weight") and ("ln" in n):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif last.startswith("b") or last == "bias":
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                fan = p.shape[-2] if p.dim() >= 2 else p.shape[0]
                p.copy_(torch.randn(p.shape, generator=g) / fan ** 0.5)


def tl_model(n_layers=2, d_vocab=320, n_ctx=16, attn_only=False, act="gelu", seed=0, b_U=False):
    """A HookedTransformer with random weights; its unembedding bias is zero unless b_U (the
    paper's checkpoints have none, and neel_state_dict leaves it out)."""
    _need("transformer_lens")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformer_lens import HookedTransformer, HookedTransformerConfig
        cfg = HookedTransformerConfig(n_layers=n_layers, d_model=32, n_heads=4, d_head=8,
                                      d_mlp=64, d_vocab=d_vocab, n_ctx=n_ctx, act_fn=act,
                                      attn_only=attn_only, normalization_type="LN",
                                      positional_embedding_type="standard", seed=seed)
        m = HookedTransformer(cfg)
    m.eval()
    _randomise(m.named_parameters(), seed)
    if not b_U:
        with torch.no_grad():
            m.unembed.b_U.zero_()
    return m


def neel_state_dict(m, keep_b_U=False):
    """The key set of the paper's model_final.pth: TransformerLens names, the attention buffers,
    no unembedding bias."""
    sd = {}
    n_ctx = m.cfg.n_ctx
    for k, v in m.state_dict().items():
        if k.endswith("attn.mask"):
            sd[k] = torch.tril(torch.ones(n_ctx, n_ctx)).bool()
        elif k.endswith("attn.IGNORE"):
            sd[k] = torch.tensor(float("-inf"))
        elif k == "unembed.b_U" and not keep_b_U:
            continue
        else:
            sd[k] = v.clone()
    return sd


def neel_config(m):
    c = m.cfg
    return {"n_layers": c.n_layers, "d_model": c.d_model, "d_mlp": c.d_mlp, "d_head": c.d_head,
            "n_heads": c.n_heads, "n_ctx": c.n_ctx, "d_vocab": c.d_vocab, "act_fn": c.act_fn,
            "attn_only": c.attn_only, "normalization": "LN", "shortformer_pos": False,
            "ln_eps": 1e-5, "tokenizer_name": "NeelNanda/gpt-neox-tokenizer-digits"}


def tl_logits(m, tokens):
    with torch.no_grad():
        return m(torch.tensor([tokens]))[0, -1].double().numpy()


def gpt2_model(seed=0, n_layer=2, vocab=320, n_pos=16):
    tr = _need("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = tr.GPT2Config(n_layer=n_layer, n_embd=32, n_head=4, vocab_size=vocab, n_positions=n_pos,
                          bos_token_id=1, eos_token_id=0)
        torch.manual_seed(seed)
        m = tr.GPT2LMHeadModel(c).eval()
    _randomise(m.named_parameters(), seed)
    return m


def gpt2_logits(m, tokens):
    with torch.no_grad():
        return m(torch.tensor([tokens])).logits[0, -1].double().numpy()


def token_lists(V, n_ctx, seed):
    rng = np.random.default_rng(seed)
    return [[1], rng.integers(0, V, 5).tolist(), rng.integers(0, V, n_ctx).tolist()]


# ---- TransformerLens checkpoints -----------------------------------------------------------------

@pytest.mark.parametrize("case", ["gelu-2l", "attn-only-1l", "relu-1l-with-b_U"])
def test_tl_checkpoint_matches_transformerlens(tmp_path, tokenizer_file, case):
    kw = {"gelu-2l": {}, "attn-only-1l": dict(n_layers=1, attn_only=True),
          "relu-1l-with-b_U": dict(n_layers=1, act="relu", b_U=True)}[case]
    m = tl_model(seed=3, **kw)
    sd = neel_state_dict(m, keep_b_U=case.endswith("b_U"))
    ck = tmp_path / "model_final.pth"
    torch.save(sd, ck)
    (tmp_path / "config.json").write_text(json.dumps(neel_config(m)))
    out = tmp_path / "model.h5"
    rc, err = convert("tl", "--checkpoint", ck, "--config", tmp_path / "config.json",
                      "--tokenizer", tokenizer_file, "--out", out)
    assert rc == 0, err
    for tokens in token_lists(m.cfg.d_vocab, m.cfg.n_ctx, seed=len(case)):
        close(lpe_logits(out, tokens), tl_logits(m, tokens), f"{case} logits of {tokens}")
    # the weights are the state dict's, bit for bit, under the methods.md §8 names
    with h5py.File(out, "r") as f:
        for k, v in sd.items():
            if k.endswith(("attn.mask", "attn.IGNORE")):
                continue
            assert np.array_equal(f[k.replace(".", "/")][()], v.numpy()), k
        assert ("unembed/b_U" in f) == case.endswith("b_U")
        assert f.attrs["act_fn"] == m.cfg.act_fn and int(f.attrs["attn_only"]) == int(m.cfg.attn_only)
        assert f.attrs["source"] == "model_final.pth" and len(f.attrs["source_sha256"]) == 64
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_tl_without_config_infers_the_shape(tmp_path):
    m = tl_model(seed=5)
    torch.save(neel_state_dict(m), tmp_path / "model_final.pth")
    rc, err = convert("tl", "--checkpoint", tmp_path / "model_final.pth", "--out", tmp_path / "m.h5")
    assert rc == 0, err
    tokens = [1, 7, 300, 2, 9]
    close(lpe_logits(tmp_path / "m.h5", tokens), tl_logits(m, tokens), "logits")


def test_tolerance_catches_a_wrong_head_split(tmp_path):
    """Swapping two heads' W_V (a plausible converter bug) must fail the comparison."""
    m = tl_model(seed=9)
    sd = neel_state_dict(m)
    wv = sd["blocks.0.attn.W_V"]
    sd["blocks.0.attn.W_V"] = wv[[1, 0, 2, 3]].clone()
    torch.save(sd, tmp_path / "model_final.pth")
    assert convert("tl", "--checkpoint", tmp_path / "model_final.pth", "--out", tmp_path / "m.h5")[0] == 0
    tokens = [1, 4, 8, 15, 16, 23, 42]
    with pytest.raises(AssertionError):
        close(lpe_logits(tmp_path / "m.h5", tokens), tl_logits(m, tokens), "logits")


# ---- GPT-2 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["save_pretrained", "bin-with-prefix", "hub-without-prefix"])
def test_gpt2_matches_transformers(tmp_path, tokenizer_file, layout):
    m = gpt2_model(seed=2)
    d = tmp_path / "gpt2"
    if layout == "save_pretrained":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.save_pretrained(d)
        assert (d / "model.safetensors").exists()
    else:
        d.mkdir()
        m.config.to_json_file(d / "config.json")
        sd = {k: v.clone() for k, v in m.state_dict().items()}
        if layout == "hub-without-prefix":  # the original gpt2 files: GPT2Model keys + buffers
            sd = {k[len("transformer."):]: v for k, v in sd.items() if k.startswith("transformer.")}
            for i in range(m.config.n_layer):
                sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(16, 16)).view(1, 1, 16, 16)
                sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
        torch.save(sd, d / "pytorch_model.bin")
    out = tmp_path / "gpt2.h5"
    rc, err = convert("gpt2", "--checkpoint", d, "--tokenizer", tokenizer_file, "--out", out)
    assert rc == 0, err
    for tokens in token_lists(320, 16, seed=11):
        close(lpe_logits(out, tokens), gpt2_logits(m, tokens), f"{layout} logits of {tokens}")
    with h5py.File(out, "r") as f:
        assert f.attrs["act_fn"] == "gelu_new" and "unembed/b_U" not in f
        assert np.array_equal(f["unembed/W_U"][()], f["embed/W_E"][()].T)  # tied


def test_safetensors_reader_matches_the_library(tmp_path):
    st = _need("safetensors.numpy")
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 5)).astype(np.float32),
               "b.c": rng.standard_normal(7).astype(np.float16), "d": np.arange(4, dtype=np.int64)}
    st.save_file(tensors, str(tmp_path / "x.safetensors"))
    got = cc.read_safetensors(str(tmp_path / "x.safetensors"))
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k


# ---- token bytes ----------------------------------------------------------------------------------

def test_token_bytes_reassemble_text_exactly(tmp_path, tokenizer_file):
    tk = _need("tokenizers")
    tok = tk.Tokenizer.from_file(str(tokenizer_file))
    V = tok.get_vocab_size()
    m = tl_model(n_layers=1, d_vocab=V + 3, seed=1)  # 3 model tokens past the tokenizer
    torch.save(neel_state_dict(m), tmp_path / "model_final.pth")
    out = tmp_path / "m.h5"
    rc, err = convert("tl", "--checkpoint", tmp_path / "model_final.pth", "--tokenizer",
                      tokenizer_file.parent, "--out", out)
    assert rc == 0 and "3 of the" in err, err
    with h5py.File(out, "r") as f:
        blob, offs = f["tokenizer/bytes"][()].tobytes(), f["tokenizer/offsets"][()]
    assert len(offs) == V + 4 and offs[0] == 0 and offs[-1] == len(blob)
    tb = [blob[offs[i]:offs[i + 1]] for i in range(V + 3)]
    assert tb[:3] == [s.encode() for s in SPECIALS] and tb[V:] == [b""] * 3
    for text in ["El niño comió 😀 中文 12345", "def foo(x):\n    return x", "ÀÉÎÕÜ ¿verdad?"]:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert any(not _is_utf8(tb[i]) for i in ids) or text.isascii()  # split characters occur
        assert b"".join(tb[i] for i in ids) == text.encode("utf-8"), text
    # every token's bytes decode as the tokenizer decodes the token alone (where valid UTF-8)
    for i in range(3, V):
        if _is_utf8(tb[i]):
            assert tb[i].decode() == tok.decode([i]), i


def _is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# ---- malformed and truncated checkpoints ------------------------------------------------------------

def _bad_tl(tmp_path, edit):
    m = tl_model(seed=4)
    sd = neel_state_dict(m)
    edit(sd)
    torch.save(sd, tmp_path / "model_final.pth")
    out = tmp_path / "bad.h5"
    rc, err = convert("tl", "--checkpoint", tmp_path / "model_final.pth", "--out", out)
    assert rc == 2 and not out.exists(), (rc, err)
    assert not list(tmp_path.glob("*.tmp")), "temporary file left behind"
    return err


@pytest.mark.parametrize("what,edit,named", [
    ("missing", lambda sd: sd.pop("blocks.1.mlp.W_out"), "blocks.1.mlp.W_out is missing"),
    ("shape", lambda sd: sd.__setitem__("blocks.1.attn.W_Q", torch.zeros(4, 32, 7)),
     "blocks.1.attn.W_Q has shape [4, 32, 7]"),
    ("unexpected", lambda sd: sd.__setitem__("blocks.0.mlp.W_gate", torch.zeros(32, 64)),
     "unexpected tensor blocks.0.mlp.W_gate"),
    ("nan", lambda sd: sd["blocks.0.ln2.b"].__setitem__(5, float("nan")),
     "blocks.0.ln2.b has a non-finite value"),
    ("int", lambda sd: sd.__setitem__("ln_final.w", torch.ones(32, dtype=torch.int64)),
     "ln_final.w has dtype torch.int64"),
    ("layers", lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("blocks.0.")],
     "blocks numbered [1]"),
    ("vocab", lambda sd: sd.__setitem__("unembed.W_U", torch.zeros(32, 100)),
     "unembed.W_U has shape [32, 100]"),
])
def test_malformed_tl_checkpoint_names_the_tensor(tmp_path, what, edit, named):
    err = _bad_tl(tmp_path, edit)
    assert named in err, err


@pytest.mark.parametrize("frac", [0.3, 0.7, 0.999])
def test_truncated_pth_names_the_cut_tensor(tmp_path, frac):
    """Cut inside the tensors: the first incomplete one is named. Cut after the last tensor
    (0.999: only the zip directory is lost): says that every tensor is complete."""
    m = tl_model(seed=6)
    sd = neel_state_dict(m)
    full = tmp_path / "full.pth"
    torch.save(sd, full)
    data = full.read_bytes()
    cut = tmp_path / "model_final.pth"
    cut.write_bytes(data[:int(len(data) * frac)])
    rc, err = convert("tl", "--checkpoint", cut, "--out", tmp_path / "m.h5")
    assert rc == 2 and not (tmp_path / "m.h5").exists(), err
    if frac > 0.99:
        n = sum(1 for k in sd)
        assert f"all {n} tensors are complete" in err, err
        return
    assert "cut short" in err, err
    name = err.split("tensor ")[1].split(" ")[0]
    assert name in sd, err  # a real key of the state dict
    assert not (tmp_path / "m.h5").exists()


def test_truncated_safetensors_names_the_tensor(tmp_path):
    m = gpt2_model(seed=1)
    d = tmp_path / "gpt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save_pretrained(d)
    p = d / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-1000])
    rc, err = convert("gpt2", "--checkpoint", d, "--out", tmp_path / "g.h5")
    assert rc == 2 and "cut short" in err and "tensor " in err, err


def test_gpt2_wrong_shape_and_config(tmp_path):
    m = gpt2_model(seed=1)
    d = tmp_path / "gpt2"
    d.mkdir()
    m.config.to_json_file(d / "config.json")
    sd = dict(m.state_dict())
    sd["transformer.h.1.attn.c_attn.weight"] = torch.zeros(32, 64)
    torch.save(sd, d / "pytorch_model.bin")
    rc, err = convert("gpt2", "--checkpoint", d, "--out", tmp_path / "g.h5")
    assert rc == 2 and "h.1.attn.c_attn.weight has shape [32, 64], expected [32, 96]" in err, err
    c = json.loads((d / "config.json").read_text())
    c["scale_attn_by_inverse_layer_idx"] = True
    (d / "config.json").write_text(json.dumps(c))
    rc, err = convert("gpt2", "--checkpoint", d, "--out", tmp_path / "g.h5")
    assert rc == 2 and "scale_attn_by_inverse_layer_idx" in err, err


def test_config_disagreeing_with_the_tensors(tmp_path):
    m = tl_model(seed=4)
    torch.save(neel_state_dict(m), tmp_path / "model_final.pth")
    c = neel_config(m)
    c["d_mlp"] = 2048
    (tmp_path / "config.json").write_text(json.dumps(c))
    rc, err = convert("tl", "--checkpoint", tmp_path / "model_final.pth", "--config",
                      tmp_path / "config.json", "--out", tmp_path / "m.h5")
    assert rc == 2 and "d_mlp = 2048" in err, err
    c = neel_config(m)
    c["normalization"] = "RMS"
    (tmp_path / "config.json").write_text(json.dumps(c))
    rc, err = convert("tl", "--checkpoint", tmp_path / "model_final.pth", "--config",
                      tmp_path / "config.json", "--out", tmp_path / "m.h5")
    assert rc == 2 and "normalization" in err, err


def test_command_line_exit_codes(tmp_path):
    """The script itself: exit 2 and one message line on stderr for bad input."""
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "convert_checkpoint.py"), "tl",
                        "--checkpoint", str(tmp_path / "junk.pth"), "--out", str(tmp_path / "m.h5")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "junk.pth" in r.stderr, r.stderr
    assert not (tmp_path / "m.h5").exists()
