"""Python bindings of ncas: ctypes over libncas (the C API of include/ncas.h), no compiled extension.

    import ncas
    model = ncas.Model("models/demo-q8_0.gguf")
    session = model.session(n_ctx=512)
    for piece in session.generate("Once upon a time", max_tokens=32, seed=7):
        print(piece, end="", flush=True)
    for piece in session.chat([{"role": "user", "content": "Hello!"}], max_tokens=32):
        print(piece, end="")

libncas is found through $NCAS_LIB (the library file), else the system's
library path (ctypes.util.find_library("ncas")). Errors raise ncas.Error with
the library's message. A model may serve several sessions on several threads;
one session is used by one thread at a time.
"""
import ctypes
import ctypes.util
import os
import queue
import threading

__all__ = ["Error", "Model", "Session", "Generation", "FINISH_REASONS"]

FINISH_REASONS = ("eos", "stop", "length", "context", "cancelled")


class Error(RuntimeError):
    """A failure reported by libncas."""


class _SamplerParams(ctypes.Structure):
    _fields_ = [("temperature", ctypes.c_float), ("top_k", ctypes.c_int32), ("top_p", ctypes.c_float),
                ("min_p", ctypes.c_float), ("repetition_penalty", ctypes.c_float),
                ("repetition_last_n", ctypes.c_int32), ("seed", ctypes.c_uint64)]


class _SessionParams(ctypes.Structure):
    _fields_ = [("n_ctx", ctypes.c_int32), ("n_threads", ctypes.c_int32), ("n_batch", ctypes.c_int32),
                ("kv_type", ctypes.c_char_p)]


class _GenerateParams(ctypes.Structure):
    _fields_ = [("sampling", _SamplerParams), ("max_tokens", ctypes.c_int32),
                ("stops", ctypes.POINTER(ctypes.c_char_p)), ("n_stops", ctypes.c_int32), ("ignore_eos", ctypes.c_int)]


class _GenerateResult(ctypes.Structure):
    _fields_ = [("finish", ctypes.c_int), ("prompt_tokens", ctypes.c_int32), ("cached_tokens", ctypes.c_int32),
                ("completion_tokens", ctypes.c_int32), ("prefill_s", ctypes.c_double), ("decode_s", ctypes.c_double)]


class _ChatMessage(ctypes.Structure):
    _fields_ = [("role", ctypes.c_char_p), ("content", ctypes.c_char_p)]


_PIECE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_void_p)


def _load_library():
    path = os.environ.get("NCAS_LIB") or ctypes.util.find_library("ncas")
    if not path:
        raise Error("libncas not found: set NCAS_LIB to the library file (e.g. build/release/libncas.so)")
    lib = ctypes.CDLL(path)
    P, I32, I64, C = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_char_p
    sigs = {
        "ncas_version": (C, []),
        "ncas_last_error": (C, []),
        "ncas_model_load": (P, [C]),
        "ncas_model_free": (None, [P]),
        "ncas_model_n_vocab": (I32, [P]),
        "ncas_model_n_ctx": (I32, [P]),
        "ncas_model_bos": (I32, [P]),
        "ncas_model_eos": (I32, [P]),
        "ncas_tokenize": (I32, [P, C, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.POINTER(I32), I32]),
        "ncas_detokenize": (I64, [P, ctypes.POINTER(I32), I32, ctypes.c_char_p, ctypes.c_size_t]),
        "ncas_session_new": (P, [P, ctypes.POINTER(_SessionParams)]),
        "ncas_session_free": (None, [P]),
        "ncas_session_n_past": (I32, [P]),
        "ncas_session_n_ctx": (I32, [P]),
        "ncas_session_prefill": (ctypes.c_int, [P, ctypes.POINTER(I32), I32]),
        "ncas_session_decode": (ctypes.c_int, [P, I32]),
        "ncas_session_logits": (ctypes.POINTER(ctypes.c_float), [P]),
        "ncas_session_rewind": (ctypes.c_int, [P, I32]),
        "ncas_session_cancel": (None, [P]),
        "ncas_session_save": (ctypes.c_int, [P, C]),
        "ncas_session_load": (ctypes.c_int, [P, C]),
        "ncas_sampler_default_params": (_SamplerParams, []),
        "ncas_generate_tokens": (ctypes.c_int, [P, ctypes.POINTER(I32), I32, ctypes.POINTER(_GenerateParams), _PIECE_FN,
                                                P, ctypes.POINTER(_GenerateResult)]),
        "ncas_chat_apply": (I64, [P, C, ctypes.POINTER(_ChatMessage), I32, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]),
        "ncas_chat": (ctypes.c_int, [P, C, ctypes.POINTER(_ChatMessage), I32, ctypes.POINTER(_GenerateParams), _PIECE_FN,
                                     P, ctypes.POINTER(_GenerateResult)]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


_lib = None


def _L():
    global _lib
    if _lib is None:
        _lib = _load_library()
    return _lib


def _fail():
    raise Error(_L().ncas_last_error().decode("utf-8", "replace"))


def version():
    """libncas's version string."""
    return _L().ncas_version().decode()


def _messages(messages):
    if isinstance(messages, (str, bytes)) or not hasattr(messages, "__len__"):
        raise Error("chat: messages must be a list of {'role': ..., 'content': ...}")
    arr = (_ChatMessage * max(1, len(messages)))()
    keep = []
    for i, m in enumerate(messages):
        try:
            role, content = m["role"], m["content"]
        except (KeyError, TypeError):
            raise Error(f"chat: message {i} needs a 'role' and a 'content'") from None
        if not isinstance(role, str) or not isinstance(content, str):
            raise Error(f"chat: message {i}: role and content must be strings")
        r, c = role.encode(), content.encode()
        keep += [r, c]
        arr[i].role, arr[i].content = r, c
    return arr, keep


class Model:
    """A loaded GGUF model (read-only; shared by its sessions)."""

    def __init__(self, path):
        self._h = _L().ncas_model_load(os.fsencode(path))
        if not self._h:
            _fail()
        self.path = str(path)

    def close(self):
        if getattr(self, "_h", None):
            _L().ncas_model_free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def n_vocab(self):
        return _L().ncas_model_n_vocab(self._h)

    @property
    def n_ctx(self):
        return _L().ncas_model_n_ctx(self._h)

    @property
    def bos(self):
        return _L().ncas_model_bos(self._h)

    @property
    def eos(self):
        return _L().ncas_model_eos(self._h)

    def tokenize(self, text, add_bos=None, special=False):
        """Text -> ids; add_bos (default: when the model has a BOS token) puts BOS first."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        if add_bos is None:
            add_bos = self.bos >= 0
        n = _L().ncas_tokenize(self._h, data, len(data), int(add_bos), int(special), None, 0)
        if n < 0:
            _fail()
        ids = (ctypes.c_int32 * max(1, n))()
        if _L().ncas_tokenize(self._h, data, len(data), int(add_bos), int(special), ids, n) < 0:
            _fail()
        return list(ids[:n])

    def detokenize_bytes(self, ids):
        arr = (ctypes.c_int32 * max(1, len(ids)))(*ids)
        n = _L().ncas_detokenize(self._h, arr, len(ids), None, 0)
        if n < 0:
            _fail()
        buf = ctypes.create_string_buffer(max(1, n))
        if _L().ncas_detokenize(self._h, arr, len(ids), buf, n) < 0:
            _fail()
        return buf.raw[:n]

    def detokenize(self, ids):
        """Ids -> text (bytes that are not UTF-8 become U+FFFD)."""
        return self.detokenize_bytes(ids).decode("utf-8", "replace")

    def apply_chat_template(self, messages, format=None, add_generation_prompt=True):
        """The messages as prompt text, in `format` (chatml, llama-2, llama-3, mistral, plain) or the model's own."""
        arr, _keep = _messages(messages)
        fmt = format.encode() if format else None
        n = _L().ncas_chat_apply(self._h, fmt, arr, len(messages), int(add_generation_prompt), None, 0)
        if n < 0:
            _fail()
        buf = ctypes.create_string_buffer(max(1, n))
        _L().ncas_chat_apply(self._h, fmt, arr, len(messages), int(add_generation_prompt), buf, n)
        return buf.raw[:n].decode("utf-8", "replace")

    def session(self, n_ctx=0, n_threads=0, n_batch=64, kv_type="f32"):
        return Session(self, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, kv_type=kv_type)


class Generation:
    """An iterator of text pieces; after it ends, .finish and .usage say how and what it cost."""

    def __init__(self, run, owner=None):
        self._owner = owner  # the session, kept alive while this runs
        self._finished = False
        self.finish = None
        self.usage = None
        self._q = queue.Queue()
        self._stop = threading.Event()
        self._error = None
        self._done = object()

        def piece(ptr, n, _user):
            if self._stop.is_set():
                return 1
            self._q.put(ctypes.string_at(ptr, n))
            return 0

        self._cb = _PIECE_FN(piece)  # kept alive for the call

        def work():
            res = _GenerateResult()
            try:
                if run(self._cb, ctypes.byref(res)) != 0:
                    self._error = Error(_L().ncas_last_error().decode("utf-8", "replace"))
                else:
                    self.finish = FINISH_REASONS[res.finish]
                    self.usage = {"prompt_tokens": res.prompt_tokens, "cached_tokens": res.cached_tokens,
                                  "completion_tokens": res.completion_tokens, "prefill_s": res.prefill_s,
                                  "decode_s": res.decode_s}
            finally:
                self._q.put(self._done)

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        item = self._q.get()
        if item is self._done:
            self._finished = True
            self._thread.join()
            if self._error:
                raise self._error
            raise StopIteration
        return item.decode("utf-8", "replace")

    def close(self):
        """Stops the generation (finish: cancelled) and waits for it; pieces not yet read are dropped."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._finished = True

    def __del__(self):
        self.close()

    def text(self):
        """The rest of the pieces, joined."""
        return "".join(self)


class Session:
    """One conversation's cache over a model; generate and chat reuse the cached prefix."""

    def __init__(self, model, n_ctx=0, n_threads=0, n_batch=64, kv_type="f32"):
        p = _SessionParams(n_ctx, n_threads, n_batch, kv_type.encode())
        self.model = model
        self._h = _L().ncas_session_new(model._h, ctypes.byref(p))
        if not self._h:
            _fail()
        self._active = None

    def _idle(self):
        # One thing at a time per session: a running generation is stopped first.
        if self._active is not None:
            self._active.close()
            self._active = None

    def _start(self, run):
        self._idle()
        self._active = Generation(run, self)
        return self._active

    def close(self):
        if getattr(self, "_active", None) is not None:
            self._active.close()
        if getattr(self, "_h", None):
            _L().ncas_session_free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    @property
    def n_past(self):
        return _L().ncas_session_n_past(self._h)

    @property
    def n_ctx(self):
        return _L().ncas_session_n_ctx(self._h)

    def prefill(self, ids):
        self._idle()
        arr = (ctypes.c_int32 * max(1, len(ids)))(*ids)
        if _L().ncas_session_prefill(self._h, arr, len(ids)) != 0:
            _fail()

    def decode(self, token):
        self._idle()
        if _L().ncas_session_decode(self._h, token) != 0:
            _fail()

    def logits(self):
        """The logits of the last token run, as a list of n_vocab floats."""
        p = _L().ncas_session_logits(self._h)
        if not p:
            raise Error("no logits yet: nothing has run")
        return p[: self.model.n_vocab]

    def rewind(self, n_past):
        self._idle()
        if _L().ncas_session_rewind(self._h, n_past) != 0:
            _fail()

    def cancel(self):
        _L().ncas_session_cancel(self._h)

    def save(self, path):
        self._idle()
        if _L().ncas_session_save(self._h, os.fsencode(path)) != 0:
            _fail()

    def load(self, path):
        self._idle()
        if _L().ncas_session_load(self._h, os.fsencode(path)) != 0:
            _fail()

    @staticmethod
    def _params(max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop, ignore_eos):
        s = _L().ncas_sampler_default_params()
        s.temperature, s.top_k, s.top_p, s.min_p = temperature, top_k, top_p, min_p
        s.repetition_penalty, s.seed = repetition_penalty, seed
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        enc = [x.encode() for x in stops]
        arr = (ctypes.c_char_p * max(1, len(enc)))(*enc)
        p = _GenerateParams(s, -1 if max_tokens is None else max_tokens, arr, len(enc), int(ignore_eos))
        return p, (enc, arr)

    def generate(self, prompt, max_tokens=None, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                 repetition_penalty=1.0, seed=0, stop=None, ignore_eos=False):
        """Continues prompt (text, or a list of ids); an iterator of text pieces (a Generation)."""
        ids = self.model.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        arr = (ctypes.c_int32 * max(1, len(ids)))(*ids)
        p, keep = self._params(max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop, ignore_eos)

        def run(cb, res):
            _ = keep
            return _L().ncas_generate_tokens(self._h, arr, len(ids), ctypes.byref(p), cb, None, res)

        return self._start(run)

    def chat(self, messages, format=None, max_tokens=None, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
             repetition_penalty=1.0, seed=0, stop=None):
        """The assistant's reply to messages ([{'role': ..., 'content': ...}]), as an iterator of pieces."""
        msgs, keep_m = _messages(messages)
        fmt = format.encode() if format else None
        p, keep = self._params(max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop, False)

        def run(cb, res):
            _ = keep, keep_m
            return _L().ncas_chat(self._h, fmt, msgs, len(messages), ctypes.byref(p), cb, None, res)

        return self._start(run)
