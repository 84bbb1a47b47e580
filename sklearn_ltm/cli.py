"""The ``sklearn-ltm`` command: demo, train, evaluate, search, zero-shot.

User mistakes (a missing file, a bad option value, a model written by another version)
end with one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
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
_RUN_TIME_PARAMS = ("callbacks",)  # set through --checkpoint and --checkpoint-every


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
    """``{"loss__temperature": (default, "Contrastive"), ...}``: the parameters of every
    registered component of each kind (one option serves every component having it)."""
    from .components import registry_of
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
                entry = options.setdefault(f"{kind}__{key}", (default, []))
                entry[1].append(name)
    for key, default in EarlyStopping().get_params(deep=False).items():
        options[f"early_stopping__{key}"] = (default, ["EarlyStopping"])
    return options


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
    top = _estimator_defaults()
    for name, default in top.items():
        _add_option(group, name, "--" + name.replace("_", "-"), default, help_text="")
    nested = parser.add_argument_group(
        "component parameters",
        "the parameters of the components (LTMRetriever's <param>__<name>), set only when "
        "given; each applies to the components named in brackets")
    taken = {"--" + n.replace("_", "-") for n in top}
    for name, (default, owners) in _component_options().items():
        flag = "--" + name.replace("__", "-").replace("_", "-")
        if flag in taken:  # never shadow another option
            flag = "--" + name.replace("_", "-")
        taken.add(flag)
        _add_option(nested, name, flag, default, nested=True,
                    help_text=f"[{', '.join(owners)}] ")


def _estimator_params(args) -> dict:
    return {name: getattr(args, name) for name in _estimator_defaults()}


def _component_params(args) -> dict:
    return {name: getattr(args, name) for name in _component_options()
            if getattr(args, name, None) is not None}


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


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def embed_folder_cached(model, model_path, files, cache_path):
    """Audio embeddings of ``files``, reusing those cached by file content.

    Parameters
    ----------
    model : LTMRetriever
        Fitted on audio files.
    model_path : path-like
        The model file: its content is part of the cache key.
    files : list of path-like
    cache_path : path-like
        An ``.npz`` file; rewritten atomically when new files were embedded.

    Returns
    -------
    ndarray of shape (len(files), embedding_dim)
        A file that cannot be read (corrupt, NaN samples) is skipped with one warning line
        on stderr: its row is NaN and it is not cached. A cache that cannot be written is
        skipped with a warning; a cache path that is a folder is an error.
    """
    from ._checks import check_writable_path
    from ._utils import atomic_write

    cache_path = Path(cache_path)
    if cache_path.is_dir():
        raise UserError(f"--cache {cache_path} is a directory; give a file (.npz).")
    try:
        check_writable_path(cache_path, "--cache")
        writable = True
    except ValueError as exc:
        print(f"warning: {exc} The embeddings are not cached.", file=sys.stderr)
        writable = False
    model_key = _file_digest(Path(model_path))
    keys = [_file_digest(Path(f)) for f in files]
    cache: dict[str, np.ndarray] = {}
    if cache_path.is_file():
        try:
            with np.load(cache_path, allow_pickle=False) as npz:
                if str(npz["model"]) == model_key:
                    cache = dict(zip(npz["keys"].tolist(), npz["embeddings"]))
        except (OSError, KeyError, ValueError):
            cache = {}
    todo = [i for i, k in enumerate(keys) if k not in cache]
    readable, skipped = _readable_audio([files[i] for i in todo], model)
    todo = [i for i, ok in zip(todo, readable) if ok]
    if not todo and not cache:
        raise UserError(f"none of the {len(files)} audio files could be read: {skipped}")
    if skipped:
        print(f"warning: {skipped}", file=sys.stderr)
    if todo:
        emb = model.transform([str(files[i]) for i in todo])
        for i, e in zip(todo, emb):
            cache[keys[i]] = e
        if writable:
            with atomic_write(cache_path, "wb") as fh:
                np.savez(fh, model=np.array(model_key), keys=np.array(list(cache)),
                         embeddings=np.stack(list(cache.values())))
    missing = np.full(len(next(iter(cache.values()))), np.nan, dtype=np.float32)
    return np.stack([cache.get(k, missing) for k in keys])


def _readable_audio(files, model):
    """Which of ``files`` decode, and the warning about those that do not (or None)."""
    from .encoders import AudioFilesSkippedWarning, check_audio_files

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AudioFilesSkippedWarning)
        keep = check_audio_files([str(f) for f in files], "skip", count_as="files",
                                 max_seconds=getattr(getattr(model, "audio_encoder_", None),
                                                     "max_seconds", None))
    skipped = [str(w.message) for w in caught
               if issubclass(w.category, AudioFilesSkippedWarning)]
    return keep, (skipped[0] if skipped else None)


# ---------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from .demo import run_demo

    report = run_demo(args.output, n_clips=args.n_clips, noise_ratio=args.noise_ratio,
                      quick=args.quick, random_state=args.seed, verbose=not args.quiet)
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
    if params["verbose"] == 0 and not args.quiet:
        params["verbose"] = 1
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
    last = est.history_[-1]
    print(f"trained {est.n_epochs_} epochs on {len(captions)} pairs; last train loss "
          f"{last['train_loss']:.4f}; model saved to {args.output}")
    return 0


def _format_table(metrics: dict) -> str:
    width = max(len(k) for k in metrics)
    return "\n".join(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                     for k, v in metrics.items())


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate

    model = _load_model(args.model)
    audio, captions = _load_pairs(args)
    metrics = evaluate(model, audio, captions, transductive=args.transductive,
                       epsilon=args.epsilon)
    metrics = {k: (float(v) if isinstance(v, (np.floating, float, int)) else v)
               for k, v in metrics.items()}
    print(json.dumps(metrics, indent=2) if args.format == "json" else _format_table(metrics))
    return 0


def cmd_search(args) -> int:
    model = _load_model(args.model)
    if args.query is None and args.audio_file is None:
        raise UserError("give --query TEXT (text-to-audio) or --audio-file FILE with --captions "
                        "FILE (audio-to-text).")
    if args.query is not None:
        files = _audio_files(args.audio_dir) if args.audio_dir else None
        if files is None:
            raise UserError("--query needs --audio-dir FOLDER to search.")
        cache = args.cache or Path(args.audio_dir) / ".sklearn-ltm-search-cache.npz"
        gallery = embed_folder_cached(model, args.model, files, cache)
        q = model.embed_text([args.query])
        d = ((q - gallery) ** 2).sum(1)
        order = np.argsort(d, kind="stable")[: min(args.k, int(np.isfinite(d).sum()))]
        print(f"top {len(order)} clips for {args.query!r}:")
        for rank, i in enumerate(order, 1):
            print(f"{rank:>3}  {d[i]:.4f}  {files[i]}")
    if args.audio_file is not None:
        if not Path(args.audio_file).is_file():
            raise UserError(f"--audio-file {args.audio_file} does not exist.")
        if args.captions is None:
            raise UserError("--audio-file needs --captions FILE (one caption a line).")
        captions = _read_lines(args.captions, "--captions")
        idx, dist = model.retrieve([str(args.audio_file)], captions, k=args.k,
                                   direction="audio-to-text")
        print(f"top {idx.shape[1]} captions for {args.audio_file}:")
        for rank, (i, d) in enumerate(zip(idx[0], dist[0]), 1):
            print(f"{rank:>3}  {d:.4f}  {captions[i]}")
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
    clf = ZeroShotAudioClassifier(model, template=args.template).fit(None, labels)
    proba = clf.predict_proba([str(f) for f in files])
    for f, row in zip(files, proba):
        best = int(np.argmax(row))
        print(f"{f}\t{clf.classes_[best]}\t{row[best]:.3f}")
    return 0


# ---------------------------------------------------------------------- parser
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
    p.add_argument("--quiet", action="store_true", help="print only the tables")
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--transductive", action="store_true",
                   help="re-rank with a Sinkhorn plan over the whole gallery")
    p.add_argument("--epsilon", type=float, default=0.05,
                   help="entropic regularisation of the transductive re-ranking")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "search", formatter_class=formatter, help="search a folder of audio by text",
        description="Embed a folder of audio once (cached by file content), then print the "
                    "top-k clips for a text query, or the top-k captions for an audio file.",
        epilog="examples:\n  sklearn-ltm search --model m.pt --audio-dir sounds --query 'rain on "
               "a roof'\n  sklearn-ltm search --model m.pt --audio-file dog.wav --captions "
               "captions.txt",
    )
    p.add_argument("--model", type=Path, required=True, help="model file")
    p.add_argument("--audio-dir", type=Path, help="folder of audio to search")
    p.add_argument("--query", help="text query")
    p.add_argument("--audio-file", type=Path, help="audio query")
    p.add_argument("--captions", type=Path, help="captions to rank for --audio-file, one a line")
    p.add_argument("-k", type=int, default=5, help="results to print")
    p.add_argument("--cache", type=Path, help="embedding cache file (default: "
                   "AUDIO_DIR/.sklearn-ltm-search-cache.npz)")
    p.set_defaults(func=cmd_search)

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
    p.add_argument("--template", default="This is a sound of {}.",
                   help="caption template for a label")
    p.add_argument("files", nargs="+", help="audio files or folders")
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
        load_plugins(_plugin_names(argv))
    except UserError as exc:
        print(f"sklearn-ltm: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "k", 1) is not None and getattr(args, "k", 1) < 1:
        parser.error(f"-k {args.k}: must be >= 1")
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, OSError, FloatingPointError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the exception's layout
        print(f"sklearn-ltm {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
