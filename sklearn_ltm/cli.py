"""The ``sklearn-ltm`` command: demo, train, evaluate, search, export, zero-shot.

User mistakes (a missing file, a bad option value, a model written by another version)
end with one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import sys
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser", "load_plugins", "PLUGIN_GROUP"]

EXIT_USAGE = 2
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class UserError(Exception):
    """A mistake of the user's, reported as one line."""


# ---------------------------------------------------------------------- helpers
#: Entry-point group whose modules are imported before the parser is built (they register
#: components, e.g. ``[project.entry-points."sklearn_ltm.plugins"] mine = "my_pkg.ltm"``).
PLUGIN_GROUP = "sklearn_ltm.plugins"
# callbacks: set through --checkpoint and --checkpoint-every; verbose: the common --verbose
_RUN_TIME_PARAMS = ("callbacks", "verbose")


def load_plugins(modules=()) -> list[str]:
    """Import the modules that register user components: ``modules`` (``--plugin``) and
    every entry point of the ``sklearn_ltm.plugins`` group.

    Parameters
    ----------
    modules : sequence of str
        Importable module names.

    Returns
    -------
    list of str
        The modules imported.

    Examples
    --------
    >>> load_plugins(["json"])[-1]
    'json'
    """
    import importlib
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin is the user's to fix: say which
            raise UserError(f"the {PLUGIN_GROUP} entry point {ep.name!r} ({ep.value}) "
                            f"failed to load: {exc!r}") from exc
        loaded.append(ep.value)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"--plugin {name}: cannot import it ({exc}).") from exc
        loaded.append(name)
    return loaded


def _estimator_defaults() -> dict:
    from .retriever import LTMRetriever

    sig = inspect.signature(LTMRetriever.__init__)
    return {k: p.default for k, p in sig.parameters.items()
            if k != "self" and k not in _RUN_TIME_PARAMS}


def _component_options() -> dict:
    """``{"loss__temperature": (default, ["contrastive"], [Contrastive]), ...}``: the
    parameters of every registered component of each kind (one option serves every
    component having it), with the names and classes of the components having it."""
    from .components import HuggingFaceText, registry_of
    from .training import EarlyStopping

    options: dict = {}
    kinds = ("audio_encoder", "text_encoder", "metric", "loss", "optimizer", "lr_schedule")
    for kind in kinds:
        registry = registry_of(kind)
        for name in registry.names():
            try:
                component = registry.create(name)
            except Exception:  # a broken user registration must not break the command
                continue
            for key, default in component.get_params(deep=False).items():
                entry = options.setdefault(f"{kind}__{key}", (default, [], []))
                entry[1].append(name)
                entry[2].append(type(component))
    # any other --text-encoder string is a Hugging Face model (not a registered name)
    for key, default in HuggingFaceText().get_params(deep=False).items():
        if key != "name":
            entry = options.setdefault(f"text_encoder__{key}", (default, [], []))
            entry[1].append("Hugging Face model")
            entry[2].append(HuggingFaceText)
    for key, default in EarlyStopping().get_params(deep=False).items():
        options[f"early_stopping__{key}"] = (default, ["EarlyStopping"], [EarlyStopping])
    return options


def _help_of(name: str, owners) -> str:
    """The first sentence documenting parameter ``name`` in the first of ``owners`` (classes
    or functions) that documents it: option help and docstrings cannot drift apart."""
    from ._docstrings import parameter_help

    for owner in owners:
        text = parameter_help(owner).get(name)
        if text:
            return text.replace("%", "%%")  # argparse formats help with %
    return ""


def _parse_scalar(text: str):
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _add_option(group, name, flag, default, *, help_text, nested=False):
    shown = "not set" if nested else default
    help_text = f"{help_text} " if help_text else ""
    if isinstance(default, bool):
        group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                           default=None if nested else default, help=f"{help_text}(default: {shown})")
    elif isinstance(default, int):
        group.add_argument(flag, dest=name, type=int, default=None if nested else default,
                           metavar="INT", help=f"{help_text}(default: {shown})")
    elif isinstance(default, float):
        group.add_argument(flag, dest=name, type=float, default=None if nested else default,
                           metavar="FLOAT", help=f"{help_text}(default: {shown})")
    elif isinstance(default, str):
        group.add_argument(flag, dest=name, type=str, default=None if nested else default,
                           metavar="STR", help=f"{help_text}(default: {shown})")
    else:
        group.add_argument(flag, dest=name, type=_parse_scalar,
                           default=None if nested else default,
                           metavar="VALUE", help=f"{help_text}(default: {shown})")


def _add_estimator_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "estimator parameters", "every LTMRetriever parameter (see its documentation)")
    from .retriever import LTMRetriever

    top = _estimator_defaults()
    for name, default in top.items():
        _add_option(group, name, "--" + name.replace("_", "-"), default,
                    help_text=_help_of(name, [LTMRetriever]))
    nested = parser.add_argument_group(
        "component parameters",
        "the parameters of the components (LTMRetriever's <param>__<name>), set only when "
        "given; each applies to the components named in brackets")
    taken = {"--" + n.replace("_", "-") for n in top}
    for name, (default, owners, classes) in _component_options().items():
        flag = "--" + name.replace("__", "-").replace("_", "-")
        if flag in taken:  # never shadow another option
            flag = "--" + name.replace("_", "-")
        taken.add(flag)
        key = name.split("__", 1)[1]
        _add_option(nested, name, flag, default, nested=True,
                    help_text=f"{_help_of(key, classes)} [{', '.join(owners)}]")


def _estimator_params(args) -> dict:
    params = {name: getattr(args, name) for name in _estimator_defaults()}
    params["verbose"] = args.verbose
    return params


def _component_params(args) -> dict:
    return {name: getattr(args, name) for name in _component_options()
            if getattr(args, name, None) is not None}


def _verbosity(text: str) -> int:
    try:
        level = int(text)
    except ValueError:
        level = -1
    if level < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an int >= 0")
    return level


def _add_cache_option(parser) -> None:
    """``--cache DIR``: the audio-embedding cache shared by search, evaluate and zero-shot."""
    parser.add_argument("--cache", type=Path,
                        help="audio-embedding cache folder, shared by search, evaluate and "
                             "zero-shot (default: $XDG_CACHE_HOME/sklearn-ltm/embeddings, or "
                             "~/.cache/sklearn-ltm/embeddings)")


def _add_verbosity(parser) -> None:
    """The one verbosity switch of every command (``args.verbose``, resolved by
    :func:`resolve_verbosity`)."""
    parser.add_argument("-v", "--verbose", type=_verbosity, default=None, metavar="LEVEL",
                        help="0: only results and errors; 1: also progress bars and steps on "
                             "stderr (default: 1 when stderr is a terminal, else 0)")


def resolve_verbosity(level, stream=None) -> int:
    """The verbosity of a command: ``level`` when given, else 1 when ``stream`` (stderr)
    is a terminal and 0 when it is a file or a pipe.

    Parameters
    ----------
    level : int or None
        The ``--verbose`` value.
    stream : file-like or None
        Default: ``sys.stderr``.

    Returns
    -------
    int

    Examples
    --------
    >>> import io
    >>> resolve_verbosity(None, io.StringIO()), resolve_verbosity(2, io.StringIO())
    (0, 2)
    """
    if level is not None:
        return int(level)
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return int(bool(isatty and isatty()))


def _add_data_options(parser, *, split_default=None):
    from .datasets import DATASETS

    parser.add_argument("--dataset", choices=(*DATASETS.names(), "csv"),
                        required=True, help="which corpus layout to read (more with --plugin: "
                                            "sklearn_ltm.datasets.register_dataset)")
    parser.add_argument("--root", type=Path,
                        help="dataset root folder (audiocaps, clotho, esc50)")
    parser.add_argument("--split", default=split_default,
                        help="audiocaps: train/val/test; clotho: development/validation/"
                             "evaluation")
    parser.add_argument("--folds", type=lambda s: [int(v) for v in s.split(",")],
                        help="esc50: comma-separated folds, e.g. 1,2,3")
    parser.add_argument("--csv", type=Path, dest="csv_path",
                        help="csv dataset: a file with columns audio_path,caption (paths "
                             "relative to the file)")
    parser.add_argument("--drop-missing", action="store_true",
                        help="skip clips listed but absent on disk (with a warning)")


def _load_pairs(args):
    from . import datasets

    if args.dataset == "csv":
        if args.csv_path is None:
            raise UserError("--dataset csv needs --csv FILE (columns audio_path,caption).")
        return read_pairs_csv(args.csv_path, drop_missing=args.drop_missing)
    if args.root is None:
        raise UserError(f"--dataset {args.dataset} needs --root FOLDER.")
    if not args.root.is_dir():
        raise UserError(f"--root {args.root} is not a folder.")
    on_missing = "drop" if args.drop_missing else "raise"
    bunch = datasets.read_dataset(args.dataset, args.root, split=args.split, folds=args.folds,
                                  on_missing=on_missing)
    return list(bunch.audio), list(bunch.captions)


def _absent(path) -> str:
    """Why ``path`` is not a file: it "is a directory" or "does not exist"."""
    return "is a directory" if Path(path).is_dir() else "does not exist"


def read_pairs_csv(path, *, drop_missing: bool = False):
    """Read ``audio_path,caption`` rows; paths are relative to the CSV file's folder.

    Parameters
    ----------
    path : str or path-like
        The CSV file (a header row ``audio_path,caption`` is required).
    drop_missing : bool
        Skip rows whose audio file is absent instead of failing.

    Returns
    -------
    audio : list of str
    captions : list of str

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.wav").write_bytes(b"")
    >>> _ = (d / "pairs.csv").write_text("audio_path,caption\\na.wav,a dog barks\\n")
    >>> audio, captions = read_pairs_csv(d / "pairs.csv")
    >>> captions
    ['a dog barks']
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CSV file {path} {_absent(path)}.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM is fine
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"audio_path", "caption"} <= set(
                    reader.fieldnames):
                raise UserError(f"{path} needs a header with columns audio_path,caption; "
                                f"found {reader.fieldnames}.")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    audio, captions, missing = [], [], []
    for number, row in enumerate(rows, start=2):
        if not (row["audio_path"] or "").strip() or not (row["caption"] or "").strip():
            raise UserError(f"{path} row {number} has an empty audio_path or caption: "
                            f"{row['audio_path']!r}, {row['caption']!r}.")
        p = Path(row["audio_path"])
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            missing.append(str(p))
            continue
        audio.append(str(p))
        captions.append(row["caption"])
    if missing and not drop_missing:
        raise UserError(f"{len(missing)} audio files listed in {path} are missing, e.g. "
                        f"{missing[:3]}; pass --drop-missing to skip them.")
    if missing:
        print(f"warning: skipped {len(missing)} missing audio files", file=sys.stderr)
    if not audio:
        raise UserError(f"{path} lists no usable (audio_path, caption) rows.")
    return audio, captions


def _load_model(path):
    from .retriever import LTMRetriever

    if not Path(path).is_file():
        raise UserError(f"model file {path} {_absent(path)}.")
    return LTMRetriever.load(path)


def _audio_files(folder: Path):
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder.")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                   and p.is_file())  # not a folder named like x.wav
    if not files:
        raise UserError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {folder}.")
    return files


def _read_lines(path, option: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file given by ``option``, stripped."""
    if not Path(path).is_file():
        raise UserError(f"{option} {path} does not exist.")
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]


def user_cache_dir() -> Path:
    """Where the command keeps its caches: ``$XDG_CACHE_HOME/sklearn-ltm`` when that
    variable is set, else ``~/.cache/sklearn-ltm`` (created by the writer, not here).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> user_cache_dir().name
    'sklearn-ltm'
    """
    import os

    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "sklearn-ltm"


def embedding_cache_dir() -> Path:
    """The default audio-embedding cache of ``search``, ``evaluate`` and ``zero-shot``.

    One folder, ``user_cache_dir() / "embeddings"``, shared by the three commands: its
    entries are keyed by each file's content hash and by the model, so a file embedded by
    one command is reused by the others, and no command writes inside an audio folder.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> embedding_cache_dir().name, embedding_cache_dir().parent.name
    ('embeddings', 'sklearn-ltm')
    """
    return user_cache_dir() / "embeddings"


# ---------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from .demo import run_demo

    report = run_demo(args.output, n_clips=args.n_clips, noise_ratio=args.noise_ratio,
                      quick=args.quick, random_state=args.seed, verbose=args.verbose > 0)
    print(f"report written to {report}")
    return 0


def cmd_train(args) -> int:
    from ._checks import check_writable_path
    from .retriever import LTMRetriever
    from .training import Checkpoint

    if args.resume is not None and not Path(args.resume).is_file():
        raise UserError(f"--resume {args.resume} {_absent(args.resume)}.")
    check_writable_path(args.output, "--output")  # before any work, not after training
    checkpoint = args.checkpoint or Path(args.output).with_suffix(".ckpt")
    params = _estimator_params(args)
    est = LTMRetriever(**params, callbacks=[
        Checkpoint(str(checkpoint), every_n_steps=args.checkpoint_every)])
    est.set_params(**_component_params(args))
    audio, captions = _load_pairs(args)
    from . import distributed

    try:  # under torchrun fit joins the process group; rank 0 saves, the others wait
        est.fit(audio, captions, resume_from=args.resume)
        main_process = distributed.is_main_process()
        if main_process:
            est.save(args.output)
        distributed.barrier()
    finally:
        distributed.shutdown()
    if not main_process:
        return 0
    print(train_report(est, len(captions), args.output, checkpoint))
    return 0


def _file_size(path) -> str:
    """The size of file ``path`` in B, KiB, MiB or GiB (one decimal above bytes)."""
    size = float(Path(path).stat().st_size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


_REPORTED_SCORES = ("t2a_R@1", "t2a_R@10", "a2t_R@1", "a2t_R@10")


def train_report(est, n_pairs: int, model_path, checkpoint_path) -> str:
    """The closing line of ``sklearn-ltm train``: epochs, the last train loss and validation
    scores, and each file written with its size.

    Parameters
    ----------
    est : LTMRetriever
        Fitted.
    n_pairs : int
        Training pairs read.
    model_path, checkpoint_path : path-like
        The model file written and the checkpoint file (reported when it exists).

    Returns
    -------
    str
    """
    last = est.history_[-1] if est.history_ else {}
    parts = [f"trained {est.n_epochs_} epochs on {n_pairs} pairs"]
    if "train_loss" in last:
        parts.append(f"last train loss {last['train_loss']:.4f}")
    val = {k[4:]: v for k, v in last.items() if k.startswith("val_")}
    shown = [k for k in _REPORTED_SCORES if k in val] or sorted(val)
    parts.append("last validation " + ", ".join(f"{k} {val[k]:.3f}" for k in shown)
                 if shown else "no validation (validation_fraction=0 and no eval_set)")
    written = [f"the model {model_path} ({_file_size(model_path)})"]
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        written.append(f"the resumable checkpoint {checkpoint_path} "
                       f"({_file_size(checkpoint_path)}: weights, optimizer and random state, "
                       f"for --resume)")
    return "; ".join(parts) + "; wrote " + " and ".join(written)


def _format_table(metrics: dict) -> str:
    width = max(len(k) for k in metrics)
    return "\n".join(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                     for k, v in metrics.items())


def cmd_evaluate(args) -> int:
    from ._cached_audio import CachedAudioRetriever
    from .evaluation import evaluate

    model = CachedAudioRetriever(_load_model(args.model), _cache_dir(args),
                                 verbose=args.verbose)
    audio, captions = _load_pairs(args)
    metrics = evaluate(model, audio, captions, transductive=args.transductive,
                       epsilon=args.epsilon, verbose=args.verbose)
    metrics = {k: (float(v) if isinstance(v, (np.floating, float, int)) else v)
               for k, v in metrics.items()}
    print(json.dumps(metrics, indent=2) if args.format == "json" else _format_table(metrics))
    return 0


def _same_windows(index, args) -> bool:
    """Whether the index holds whole clips, or windows of ``--window-seconds`` every
    ``--hop-seconds``, as asked."""
    start, end = index.start_s_, index.end_s_
    if args.window_seconds is None:
        return bool(np.isnan(start).all())
    if np.isnan(start).any():
        return False
    hop = args.window_seconds if args.hop_seconds is None else args.hop_seconds
    if not np.isclose((end - start).max(), args.window_seconds, atol=1e-3):
        return False
    steps = np.diff(start)[index.sources_[1:] == index.sources_[:-1]]
    steps = steps[steps > 0]
    # every step is the hop, except the last of a file (its window ends at the last sample)
    return steps.size == 0 or bool(np.isclose(steps.max(), hop, atol=1e-3))


def _cache_dir(args) -> Path:
    """``--cache``, or the shared default (:func:`embedding_cache_dir`)."""
    return args.cache or embedding_cache_dir()


def _text_queries(args) -> list[str]:
    """``--query`` values, then the lines of ``--queries-file``."""
    queries = list(args.query or [])
    if args.queries_file is not None:
        queries += _read_lines(args.queries_file, "--queries-file")
    return queries


def _index_holds(index, files) -> bool:
    """Whether ``index`` holds exactly these files, with their current content."""
    from .search import file_digest

    wanted = {(f, file_digest(f)) for f in files}
    return set(zip(index.sources_.tolist(), index.keys().tolist())) == wanted


def _search_index(args, model):
    """The SearchIndex of ``--index`` / ``--audio-dir``: loaded, reused or (re)built."""

    from .search import SearchIndex

    index = None
    if args.index is not None and Path(args.index).is_file():
        index = SearchIndex.load(args.index, model, backend=args.backend, nprobe=args.nprobe)
    if args.audio_dir is None:
        if index is None:
            what = f"--index {args.index} does not exist yet" if args.index else "no --index"
            raise UserError(f"{what}: give --audio-dir FOLDER to build the index to search.")
        return index
    # a folder named like an audio file (x.wav/) is not a recording: left out silently
    files = [str(f) for f in _audio_files(args.audio_dir) if f.is_file()]
    if not files:
        raise UserError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {args.audio_dir}.")
    same_settings = index is not None and (args.backend == "exact" or index.factory ==
                                           args.factory) and _same_windows(index, args)
    if same_settings and _index_holds(index, files):  # reuse it: these files, unchanged
        return index
    index = SearchIndex(model, backend=args.backend, factory=args.factory, nprobe=args.nprobe,
                        cache_dir=_cache_dir(args), verbose=args.verbose)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        index.add(files, window_seconds=args.window_seconds, hop_seconds=args.hop_seconds)
    if len(index) == 0:  # one line: the error says it all (the skip warning is its detail)
        detail = next((str(w.message) for w in caught if issubclass(w.category, UserWarning)),
                      "")
        first = detail.split("e.g. ", 1)[1].rstrip(".") if "e.g. " in detail else ""
        raise UserError(f"none of the {len(files)} audio files under {args.audio_dir} could be "
                        "read" + (f", e.g. {first}" if first else "") + ".")
    for w in caught:  # skipped files, an unwritable cache: one line each
        if issubclass(w.category, UserWarning):
            print(f"sklearn-ltm search: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if args.index is not None:
        index.save(args.index)
    return index


def _print_hits(title, results, row):
    print(title)
    for rank, (source, start, end, dist) in enumerate(results.hits(row), 1):
        span = "" if start is None else f"  {start:.2f}-{end:.2f}s"
        print(f"{rank:>3}  {dist:.4f}  {source}{span}")


def cmd_search(args) -> int:
    queries = _text_queries(args)
    audio_queries = [str(f) for f in (args.audio_query or [])]
    if not queries and not audio_queries and args.audio_file is None:
        raise UserError("give --query TEXT or --queries-file FILE (text-to-audio), "
                        "--audio-query FILE (audio-to-audio), or --audio-file FILE with "
                        "--captions FILE (audio-to-text).")
    for f in audio_queries:
        if not Path(f).is_file():
            raise UserError(f"--audio-query {f} does not exist.")
    if args.hop_seconds is not None and args.window_seconds is None:
        raise UserError("--hop-seconds needs --window-seconds.")
    if args.backend == "exact" and args.factory != "Flat":
        raise UserError(f"--factory {args.factory} needs --backend faiss.")
    model = _load_model(args.model)
    records = []
    if queries or audio_queries:
        index = _search_index(args, model)
        if queries:
            records += _text_records(queries, index.search(queries, k=args.k))
        if audio_queries:
            res = index.search_audio(audio_queries, k=args.k)
            for i, q in enumerate(audio_queries):
                records.append(("audio", q, res, i, f"top {res.k} clips like {q}:"))
    if args.audio_file is not None:
        if not Path(args.audio_file).is_file():
            raise UserError(f"--audio-file {args.audio_file} does not exist.")
        if args.captions is None:
            raise UserError("--audio-file needs --captions FILE (one caption a line).")
        captions = _read_lines(args.captions, "--captions")
        idx, dist = model.retrieve([str(args.audio_file)], captions, k=args.k,
                                   direction="audio-to-text")
        records.append(("captions", str(args.audio_file), (idx, dist, captions), 0,
                        f"top {idx.shape[1]} captions for {args.audio_file}:"))
    _print_records(records, args.format)
    if queries:
        _save_query_tower(args, model, index)
    return 0


def _print_records(records, fmt) -> None:
    """Print the hits of ``search`` as a table or as JSON."""
    if fmt == "json":
        out = []
        for kind, q, res, i, _ in records:
            if kind == "captions":
                idx, dist, captions = res
                hits = [{"rank": r + 1, "caption": captions[j], "distance": float(d),
                         "index": int(j)} for r, (j, d) in enumerate(zip(idx[0], dist[0]))]
            else:
                hits = res.to_records()[i]["hits"]
            out.append({"kind": kind, "query": q, "hits": hits})
        print(json.dumps(out, indent=2))
        return
    for kind, _, res, i, title in records:
        if kind == "captions":
            idx, dist, captions = res
            print(title)
            for rank, (j, d) in enumerate(zip(idx[0], dist[0]), 1):
                print(f"{rank:>3}  {d:.4f}  {captions[j]}")
        else:
            _print_hits(title, res, i)


def _text_records(queries, res) -> list:
    return [("text", q, res, i, f"top {res.k} clips for {q!r}:") for i, q in enumerate(queries)]


def _save_query_tower(args, model, index) -> None:
    """After a text search of a saved index: cache the text tower (see _quick_search)."""
    if args.index is None or args.backend != "exact":
        return
    from ._query_towers import save_tower

    try:
        save_tower(model, args.model, _cache_dir(args), index.model_id_)
    except Exception as exc:  # noqa: BLE001  (a cache is a convenience: say so, go on)
        if args.verbose:
            print(f"sklearn-ltm search: note: query tower not cached ({exc})", file=sys.stderr)


class _QuietParser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(message)


def _quick_search(argv):
    """Answer a text search of a saved index from the cached query tower, or None.

    Only torch and numpy are imported: the model's text tower, cached as TorchScript by
    an earlier search (:mod:`sklearn_ltm._query_towers`), embeds the queries, and the index
    file holds the audio side. None (the usual path runs) for anything else: audio
    queries, FAISS, windows, no tower yet, a tower or index of another model, an index that
    does not hold exactly the files of ``--audio-dir``, or any option the usual parser
    must judge.
    """
    if not argv or argv[0] != "search" or any(a in ("-h", "--help") for a in argv):
        return None
    parser = _QuietParser(add_help=False)
    _add_search_arguments(parser)
    try:
        args = parser.parse_args(argv[1:])
    except UserError:
        return None
    if (args.audio_query or args.audio_file or args.captions or args.backend != "exact"
            or args.window_seconds is not None or args.hop_seconds is not None
            or args.index is None or not args.index.is_file() or not args.model.is_file()
            or args.k < 1 or not (args.query or args.queries_file)):
        return None
    from ._query_towers import load_tower
    from .search import SearchIndex

    try:
        index = SearchIndex.load(args.index)
    except ValueError:
        return None  # the usual path says what is wrong with it
    if not _same_windows(index, args):
        return None
    tower = load_tower(args.model, index.model_id_, _cache_dir(args))
    if tower is None:
        return None
    if args.audio_dir is not None:
        files = [str(f) for f in _audio_files(args.audio_dir) if f.is_file()]
        if not files or not _index_holds(index, files):
            return None
    queries = _text_queries(args)
    res = index.search_vectors(tower.embed(queries), k=args.k)
    _print_records(_text_records(queries, res), args.format)
    return 0


def cmd_export(args) -> int:
    from .export import export_towers

    model = _load_model(args.model)
    towers = [t.strip() for t in args.towers.split(",") if t.strip()]
    written = export_towers(model, args.output, format=args.format, towers=towers)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def cmd_zero_shot(args) -> int:
    from .zero_shot import ZeroShotAudioClassifier

    model = _load_model(args.model)
    if args.labels_file is not None:
        labels = _read_lines(args.labels_file, "--labels-file")
    elif args.labels:
        labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    else:
        raise UserError("give the label names with --labels a,b,c or --labels-file FILE.")
    if len(set(labels)) < 2:
        raise UserError(f"zero-shot needs at least 2 distinct labels; got {labels}.")
    files = []
    for f in args.files:
        p = Path(f)
        if p.is_dir():
            files.extend(_audio_files(p))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{f} does not exist.")
    from ._cached_audio import CachedAudioRetriever

    model = CachedAudioRetriever(model, _cache_dir(args), verbose=args.verbose)
    clf = ZeroShotAudioClassifier(model, template=args.template,
                                  verbose=args.verbose).fit(None, labels)
    proba = clf.predict_proba([str(f) for f in files])
    for f, row in zip(files, proba):
        best = int(np.argmax(row))
        print(f"{f}\t{clf.classes_[best]}\t{row[best]:.3f}")
    return 0


# ---------------------------------------------------------------------- parser
def _add_search_arguments(p) -> None:
    """The options of ``search`` (shared by its parser and the cached-tower fast path)."""
    p.add_argument("--model", type=Path, required=True, help="model file")
    p.add_argument("--audio-dir", type=Path, help="folder of audio to index and search")
    p.add_argument("--index", type=Path, help="search index file: built (from --audio-dir) "
                   "when absent, reused when it matches the model and the folder")
    p.add_argument("--query", action="append", help="text query (repeat for several)")
    p.add_argument("--queries-file", type=Path, help="text queries, one a line")
    p.add_argument("--audio-query", action="append", type=Path,
                   help="audio file to search by (audio-to-audio; repeat for several)")
    p.add_argument("--audio-file", type=Path, help="audio query for --captions")
    p.add_argument("--captions", type=Path, help="captions to rank for --audio-file, one a line")
    p.add_argument("-k", type=int, default=5, help="results per query")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="print the hits as a table or as JSON")
    p.add_argument("--backend", choices=("exact", "faiss"), default="exact",
                   help="exact chunked search, or FAISS (pip install 'sklearn-ltm[faiss]')")
    p.add_argument("--factory", default="Flat",
                   help="FAISS index factory string, e.g. Flat, IVF1024,Flat, HNSW32")
    p.add_argument("--nprobe", type=int, default=16, help="IVF lists visited per query")
    p.add_argument("--window-seconds", type=float, default=None,
                   help="index windows of this length (hits give start-end times)")
    p.add_argument("--hop-seconds", type=float, default=None,
                   help="step between windows (default: the window length)")
    _add_cache_option(p)
    _add_verbosity(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sklearn-ltm`` command.

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> parser = build_parser()
    >>> parser.parse_args(["demo", "--quick"]).quick
    True
    """
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="sklearn-ltm", formatter_class=formatter,
        description="Audio-text retrieval with m-LTM (optimal transport under a learned "
                    "Mahalanobis metric).",
        epilog="examples:\n  sklearn-ltm demo --output ltm-demo-report\n"
               "  sklearn-ltm train --dataset clotho --root data/clotho --output model.pt\n"
               "  sklearn-ltm search --model model.pt --audio-dir sounds/ --query 'a dog barks'",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"sklearn-ltm {__version__}")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (repeatable): it registers user components "
                             "(sklearn_ltm.components.register_*) or datasets "
                             "(sklearn_ltm.datasets.register_dataset), then usable by name; "
                             f"the modules of the {PLUGIN_GROUP!r} entry-point group are "
                             "always imported")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo", formatter_class=formatter, help="train and compare on the built-in corpus",
        description="Train m-LTM and the contrastive baseline on the built-in synthetic sound "
                    "corpus, with clean and shuffled captions, and write an HTML report.",
        epilog="examples:\n  sklearn-ltm demo\n  sklearn-ltm demo --output report --quick",
    )
    p.add_argument("--output", type=Path, default=Path("ltm-demo-report"),
                   help="report folder (created; nothing is written elsewhere)")
    p.add_argument("--n-clips", type=int, default=None, help="corpus size (default: 1200, "
                   "quick: 500)")
    p.add_argument("--noise-ratio", type=float, default=0.4,
                   help="fraction of shuffled training captions in the noisy run")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    _add_verbosity(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "train", formatter_class=formatter, help="train a retriever and save it",
        description="Train an LTMRetriever on a dataset and save it (with a resumable "
                    "checkpoint next to it).",
        epilog="examples:\n"
               "  sklearn-ltm train --dataset esc50 --root ESC-50 --audio-encoder aisfx \\\n"
               "      --text-encoder sentence-transformers/all-MiniLM-L6-v2 --output m.pt\n"
               "  sklearn-ltm train --dataset csv --csv pairs.csv --output m.pt --resume m.ckpt",
    )
    _add_data_options(p)
    p.add_argument("--output", type=Path, required=True, help="model file to write")
    p.add_argument("--resume", type=Path, default=None, help="checkpoint to resume from")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="resumable checkpoint, written atomically after every epoch "
                        "(default: OUTPUT with suffix .ckpt)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="also write the checkpoint every N optimizer steps")
    _add_verbosity(p)
    _add_estimator_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", formatter_class=formatter, help="retrieval metrics of a saved model",
        description="Every retrieval metric (R@1/5/10, mAP@10, ranks, both directions, "
                    "modality gap) of a saved model on a dataset.",
        epilog="examples:\n  sklearn-ltm evaluate --model m.pt --dataset clotho --root clotho "
               "--split evaluation --format json",
    )
    p.add_argument("--model", type=Path, required=True, help="model file")
    _add_data_options(p)
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="a two-column table, or one JSON object (default: table)")
    from .evaluation import evaluate

    p.add_argument("--transductive", action="store_true",
                   help=_help_of("transductive", [evaluate]))
    p.add_argument("--epsilon", type=float, default=0.05,
                   help=f"{_help_of('epsilon', [evaluate])} (default: 0.05)")
    _add_cache_option(p)
    _add_verbosity(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "search", formatter_class=formatter, help="search a folder of audio by text or audio",
        description="Index a folder of audio once (embeddings cached by file content and "
                    "model; the index saved with --index and reused while the folder is "
                    "unchanged), then print the top-k clips for text queries (--query, "
                    "--queries-file) or audio queries (--audio-query), or the top-k captions "
                    "for an audio file (--audio-file with --captions).",
        epilog="examples:\n  sklearn-ltm search --model m.pt --audio-dir sounds --query 'rain on "
               "a roof'\n  sklearn-ltm search --model m.pt --audio-dir sounds --index "
               "sounds.idx --query 'a dog' --query 'a siren' --format json\n"
               "  sklearn-ltm search --model m.pt --index sounds.idx --audio-query dog.wav\n"
               "  sklearn-ltm search --model m.pt --audio-dir long --window-seconds 2 "
               "--hop-seconds 1 --query 'a dog barks'\n"
               "  sklearn-ltm search --model m.pt --audio-file dog.wav --captions "
               "captions.txt",
    )
    _add_search_arguments(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "export", formatter_class=formatter, help="export the audio and text towers",
        description="Write the audio tower (front end, encoder, head, metric map) and the text "
                    "tower (encoder, head, metric map; the tokenizer stays in Python) as "
                    "programs that plain torch (or onnxruntime) loads without sklearn-ltm, "
                    "plus a JSON file describing their inputs.",
        epilog="examples:\n  sklearn-ltm export --model m.pt --output exported/m\n"
               "  sklearn-ltm export --model m.pt --output exported/m --format onnx "
               "--towers audio",
    )
    p.add_argument("--model", type=Path, required=True, help="model file")
    p.add_argument("--output", type=Path, required=True,
                   help="path prefix: PREFIX.audio.pt, PREFIX.text.pt, PREFIX.towers.json")
    p.add_argument("--format", choices=("torchscript", "torch.export", "onnx"),
                   default="torchscript", help="program format (onnx: pip install "
                   "'sklearn-ltm[onnx]')")
    p.add_argument("--towers", default="audio,text", help="comma-separated: audio,text")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "zero-shot", formatter_class=formatter, help="classify audio among label names",
        description="Zero-shot classification: each file gets the label whose caption "
                    "(rendered with --template) is closest in the learned space.",
        epilog="examples:\n  sklearn-ltm zero-shot --model m.pt --labels 'dog,rain,siren' "
               "clips/*.wav",
    )
    p.add_argument("--model", type=Path, required=True, help="model file")
    p.add_argument("--labels", help="comma-separated label names")
    p.add_argument("--labels-file", type=Path, help="label names, one a line")
    from .zero_shot import ZeroShotAudioClassifier

    p.add_argument("--template", default="This is a sound of {}.",
                   help=f"{_help_of('template', [ZeroShotAudioClassifier])} "
                        "(default: %(default)r)")
    p.add_argument("files", nargs="+", help="audio files or folders")
    _add_cache_option(p)
    _add_verbosity(p)
    p.set_defaults(func=cmd_zero_shot)
    return parser


def _plugin_names(argv) -> list[str]:
    """The ``--plugin`` values of ``argv`` (read before the parser, which they extend)."""
    names = []
    for i, arg in enumerate(argv):
        if arg == "--plugin" and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif arg.startswith("--plugin="):
            names.append(arg.split("=", 1)[1])
    return names


def main(argv=None) -> int:
    """Entry point of the ``sklearn-ltm`` command.

    Parameters
    ----------
    argv : list of str or None
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a user mistake.

    Examples
    --------
    >>> main(["zero-shot", "--model", "no-such-model.pt", "--labels", "a,b", "x.wav"])
    2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        quick = _quick_search(argv)
    except (UserError, ValueError, OSError):
        quick = None  # the usual path runs, and reports any real problem
    if quick is not None:
        return quick
    try:
        load_plugins(_plugin_names(argv))
    except UserError as exc:
        print(f"sklearn-ltm: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = resolve_verbosity(getattr(args, "verbose", None))
    if getattr(args, "k", 1) is not None and getattr(args, "k", 1) < 1:
        parser.error(f"-k {args.k}: must be >= 1")
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, OSError, FloatingPointError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the exception's layout
        print(f"sklearn-ltm {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:  # a missing optional extra (faiss, onnx) is a user matter
        if "sklearn-ltm[" not in str(exc):
            raise
        print(f"sklearn-ltm {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
