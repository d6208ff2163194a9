"""generate() and stream_generate(): prompts as text, token ids or mlx arrays; the C++ generator runs
with the GIL released, so a stream is fed from a worker thread through a queue."""
import atexit
import numbers
import queue
import threading
import weakref

from . import _core
from ._checks import CALLABLE, HOOKS, NONE, STR, check, checked
from ._config import GenerationConfig
from .interop import as_model, as_tokenizer

_STAT_KEYS = ("prompt_tokens", "generated_tokens", "prefill_tokens_per_s", "decode_tokens_per_s",
              "peak_memory_bytes")


def _prompt_ids(tokenizer, prompt, chat, system):
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError("[generate] the model has no tokenizer; pass token ids instead of text")
        if chat:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}]
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return tokenizer.encode(prompt)
    if chat:
        raise ValueError("[generate] chat=True needs the prompt as text")
    if hasattr(prompt, "tolist"):  # mlx / numpy arrays: [T] or [1, T]
        if "int" not in str(getattr(prompt, "dtype", "int")):
            raise TypeError(f"[generate] token ids must be integers, got an array of {prompt.dtype}")
        prompt = prompt.tolist()
        if prompt and isinstance(prompt[0], list):
            if len(prompt) != 1:
                raise ValueError("[generate] pass one prompt (an array of shape [T] or [1, T])")
            prompt = prompt[0]
    if not isinstance(prompt, (list, tuple)):
        raise TypeError("[generate] a prompt is text, a list of token ids or an mlx array, got "
                        f"{type(prompt).__name__}")
    # No silent conversion: 504.9 is not token 504, and True is not token 1.
    for t in prompt:
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(f"[generate] token ids must be ints, got {t!r}")
        if not 0 <= t < 2**31:
            raise ValueError(f"[generate] token id {t} is out of range")
    return [int(t) for t in prompt]


def _is_batch(prompt):
    """A list of prompts (texts, id lists or arrays), or a [B, T] array with B > 1; a list of ints is one prompt."""
    if isinstance(prompt, (list, tuple)):
        return len(prompt) > 0 and not isinstance(prompt[0], numbers.Number) and not (
            hasattr(prompt[0], "ndim") and prompt[0].ndim == 0)
    return hasattr(prompt, "ndim") and prompt.ndim == 2 and prompt.shape[0] > 1


def _checked_stop_callback(fn):
    """stop_callback(ids) must answer a bool: anything else would be read as one (or fail in C++)."""
    def checked(ids):
        answer = fn(ids)
        numpy_bool = type(answer).__module__ == "numpy" and type(answer).__name__ in ("bool", "bool_")
        if not isinstance(answer, bool) and not numpy_bool:
            raise TypeError(f"[generate] stop_callback must return a bool, got {type(answer).__name__}")
        return bool(answer)
    return checked


def _refuse_streamed_beams(cfgs, callback):
    """Beam search knows its best sequences only at the end: a callback would never be called."""
    if callback is not None and any(c.num_beams > 1 for c in cfgs):
        raise ValueError("[generate] beam search (num_beams > 1) is not streamed: its best sequences are known only "
                         "at the end (call generate() without callback, outside stream_generate)")


def _config(config, settings):
    if config is None:
        config = GenerationConfig()
    elif isinstance(config, dict):
        config = GenerationConfig(**config)
    elif not isinstance(config, GenerationConfig):
        raise TypeError("config must be a GenerationConfig, a dict of its fields, or None")
    return config.copy(**settings) if settings else config


def _output(raw):
    """The C++ result dict, plus the first sequence's text / tokens / finish_reason and the stats at top level."""
    out = dict(raw)
    first = raw["sequences"][0] if raw["sequences"] else {"text": "", "token_ids": [], "finish_reason": "none"}
    out["text"] = first["text"]
    out["tokens"] = first["token_ids"]
    out["finish_reason"] = first["finish_reason"]
    for k in _STAT_KEYS:
        out[k] = raw["stats"][k]
    if "speculative" in raw["stats"]:
        out["speculative"] = raw["stats"]["speculative"]
    return out


@checked("generate", hooks=HOOKS | NONE, callback=CALLABLE | NONE, stop_callback=CALLABLE | NONE, system=STR | NONE)
def generate(model, tokenizer, prompt, config=None, hooks=None, *, callback=None, stop_callback=None, chat=False,
             system=None, negative_prompt=None, prefill_chunk_size=512, batch_size=16, **settings):
    """Generates from `prompt` (text, token ids, or an mlx array). `config` is a GenerationConfig (or dict);
    keyword settings override it. `hooks` are attached for this call only. `callback(token, text)` sees each
    token of the first sequence as it is produced; `stop_callback(ids) -> bool` stops a sequence
    (finish_reason "stop_callback"). Returns a dict: text, tokens, finish_reason, sequences (one per
    returned sequence / beam, with score for beams), prompt_token_ids, stats and its keys at top level.

    A list of prompts (or a [B, T] array) is decoded as a batch, up to `batch_size` rows at a time, and
    gives a list of such dicts in input order; `config` may then be a list with one config per prompt, and
    `callback(index, token, text)` streams the first sequence of every prompt.

    `model` / `tokenizer` may also be what `mlx_lm.load` returns (see mlx_gen_parity.interop)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or not 1 <= batch_size < 2**31:
        raise ValueError(f"[generate] batch_size must be a whole number >= 1, got {batch_size!r}")
    if isinstance(prefill_chunk_size, bool) or not isinstance(prefill_chunk_size, numbers.Integral) or \
            not 1 <= prefill_chunk_size < 2**31:
        raise ValueError(f"[generate] prefill_chunk_size must be a whole number >= 1, got {prefill_chunk_size!r}")
    if stop_callback is not None:
        stop_callback = _checked_stop_callback(stop_callback)
    tokenizer, folder = as_tokenizer(tokenizer)
    model = as_model(model, folder)
    neg = None
    if negative_prompt is not None:
        neg = _prompt_ids(tokenizer, negative_prompt, False, None)
    if _is_batch(prompt):
        prompts = prompt.tolist() if hasattr(prompt, "tolist") else list(prompt)
        ids = [_prompt_ids(tokenizer, p, chat, system) for p in prompts]
        if isinstance(config, (list, tuple)):
            if len(config) != len(ids):
                raise ValueError(f"[generate] {len(config)} configs for {len(ids)} prompts: give one, or one per prompt")
            cfgs = [_config(c, settings) for c in config]
        else:
            cfgs = [_config(config, settings)]
        _refuse_streamed_beams(cfgs, callback)
        if any(c.draft_model_object is not None for c in cfgs):
            raise ValueError("[generate] a loaded draft model works with one prompt; for a list give "
                             "draft_model_id as a path")
        cb = None
        if callback is not None:
            def cb(index, row, token, text):
                if row == 0:
                    callback(index, token, text)
        raws = _core.generate_batch(model, tokenizer, ids, [c.overrides_json() for c in cfgs], cb, stop_callback,
                                    list(hooks or []), neg, prefill_chunk_size, batch_size)
        return [_output(r) for r in raws]
    cfg = _config(config, settings)
    _refuse_streamed_beams([cfg], callback)
    ids = _prompt_ids(tokenizer, prompt, chat, system)
    draft = cfg.draft_model_object
    if draft is not None:
        draft = as_model(draft)
    raw = _core.generate(model, tokenizer, ids, cfg.overrides_json(), callback, stop_callback, list(hooks or []), neg,
                         prefill_chunk_size, draft)
    return _output(raw)


class _Closed(Exception):
    """Raised by a closed stream's token callback: unwinds the C++ generation at once."""


class GenerationStream:
    """Iterator over (token, text) pieces of the first sequence while generation runs in a worker thread.
    After the iteration ends, `.result` holds what generate() returns. Errors are raised by the iteration.
    Closing it (`.close()`, leaving a `for` loop early and dropping it, or interpreter exit) stops the
    generation and joins the worker: a worker left generating in C++ while Python shuts down crashes it."""

    _DONE = object()

    def __init__(self, model, tokenizer, prompt, config=None, hooks=None, **kwargs):
        if _is_batch(prompt):
            raise ValueError("[generate] stream_generate takes one prompt; for a list use generate(..., callback=...)")
        # The worker holds none of self, so dropping the stream runs __del__ (which closes it).
        self._queue = q = queue.Queue()
        self._closed = closed = threading.Event()
        self._outcome = outcome = {}
        done = self._DONE
        user_stop = check("generate", "stop_callback", kwargs.pop("stop_callback", None), CALLABLE | NONE)

        def push(token, text):
            if closed.is_set():
                raise _Closed
            q.put((token, text))

        def stop(ids):  # every sequence stops once closed (push only sees the first one)
            if closed.is_set():
                return True
            return user_stop(ids) if user_stop is not None else False

        def work():
            try:
                outcome["result"] = generate(model, tokenizer, prompt, config, hooks, callback=push,
                                             stop_callback=stop, **kwargs)
            except _Closed:
                pass
            except BaseException as e:  # handed to the consumer thread
                outcome["error"] = e
            finally:
                q.put(done)

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()
        _open_streams.add(self)

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed.is_set():
            raise StopIteration
        item = self._queue.get()
        if item is self._DONE:
            self._thread.join()
            self._queue.put(self._DONE)  # further next() calls stop again
            if "error" in self._outcome:
                raise self._outcome.pop("error")
            raise StopIteration
        return item

    def close(self):
        """Stops the generation (at its next token) and waits for the worker thread to end."""
        self._closed.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        _open_streams.discard(self)

    def __del__(self):
        if hasattr(self, "_thread") and not self._closed.is_set():
            self.close()

    @property
    def result(self):
        return self._outcome.get("result")

    @property
    def text(self):
        return self.result["text"] if self.result else None


# Streams still open at interpreter exit are closed first: their workers must not run into finalization.
_open_streams = weakref.WeakSet()
atexit.register(lambda: [s.close() for s in list(_open_streams)])


@checked("generate", hooks=HOOKS | NONE)
def stream_generate(model, tokenizer, prompt, config=None, hooks=None, **kwargs):
    """generate() as an iterator of (token, text) pieces; see GenerationStream."""
    return GenerationStream(model, tokenizer, prompt, config, hooks, **kwargs)
