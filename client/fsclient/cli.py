"""`fsclient`: the command line of facesearch.

Parsing and I/O live here; every line of text comes from the pure formatters in
`fsclient.format`. Errors end as one line on stderr and an exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any, NoReturn

import grpc
import numpy as np

from fsclient.cli_args import (
    UsageError,
    add_global_options,
    fetch_thumbnail,
    non_negative_int,
    one_vector,
    positive_int,
    write_picture,
)
from fsclient.cli_collections import register as register_collection_commands
from fsclient.cli_people import register as register_people_commands
from fsclient.client import DEFAULT_SERVER, FaceSearchClient, FaceSearchError
from fsclient.enroll import DEFAULT_IMAGE_BATCH, DEFAULT_VECTOR_BATCH, Enrollment, EnrollOptions
from fsclient.format import (
    add_report_json,
    dumps,
    format_compact,
    format_delete,
    format_embedding,
    format_item,
    format_save,
    format_stats,
)
from fsclient.format_add import format_add_summary
from fsclient.format_query import format_neighbors
from fsclient.labels import read_labels_csv
from fsclient.picture import MissingPillowError, draw_matches, require_pillow
from fsclient.progress import ProgressBar, Spinner
from fsclient.sources import LocalFileError, collect_sources, read_file, write_file
from fsclient.types import ItemError

EPILOG = f"""\
The server is --server, else $FSCLIENT_SERVER, else {DEFAULT_SERVER}.
A server that wants a token (fsserver --auth-token-file) gets $FSCLIENT_TOKEN,
or the token in --token-file.
Exit status: 0 on success; 1 on an error, or when `add` could not add some item;
2 on a usage error."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block; one line with a pointer to --help is enough.
    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---- argument types ----------------------------------------------------------------------


# ---- the commands ------------------------------------------------------------------------


def _show_progress(args: argparse.Namespace) -> bool:
    # Only a person at a terminal wants it; --json keeps stderr for the one error line.
    return sys.stderr.isatty() and not args.quiet and not args.json


def run_add(args: argparse.Namespace, client: FaceSearchClient) -> int:
    if args.paths and args.labels_csv is not None:
        raise UsageError("add takes PATHs or --labels-csv FILE, not both")
    if not args.paths and args.labels_csv is None:
        raise UsageError("add needs a PATH (or --labels-csv FILE)")
    if args.labels_csv is not None:
        sources = read_labels_csv(args.labels_csv)
    else:
        sources = collect_sources(args.paths)
    total = sum(source.rows for source in sources)
    if args.id is not None and total != 1:
        raise UsageError(f"--id needs exactly one item to add, got {total}")
    options = EnrollOptions(
        label=args.label,
        label_from_dir=args.label_from_dir,
        metadata=args.metadata,
        id=args.id,
        batch_size=args.batch_size,
        keep_outcomes=args.json,
        skip_existing=args.skip_existing,
    )
    enrollment = Enrollment(options)
    bar = ProgressBar(total, sys.stderr, enabled=_show_progress(args))

    def summary(broke: ItemError | None = None) -> str:
        if args.json:
            return dumps(add_report_json(enrollment.outcomes, broke))
        return format_add_summary(
            enrollment.added, enrollment.failures, enrollment.last_id, enrollment.duplicates
        )

    try:
        enrollment.run(client, sources, bar)
    except FaceSearchError as error:
        bar.close()
        if enrollment.added or enrollment.failures:
            # What did get in before the stream broke; the error line follows on stderr.
            print(summary(ItemError(error.code.value[0], error.details)))
        raise
    bar.close()
    if enrollment.failures or enrollment.duplicates or not args.quiet or args.json:
        print(summary())
    return 1 if enrollment.failures else 0


def run_query(args: argparse.Namespace, client: FaceSearchClient) -> int:
    given = [args.image is not None, args.vector is not None, args.id is not None]
    if sum(given) != 1:
        raise UsageError("query takes exactly one of IMAGE, --vector FILE.npy or --id N")
    if args.show:
        require_pillow()  # before a slow query whose picture could not be drawn
    query_image: bytes | None = None
    options = {"k": args.k, "ef": args.ef, "exact": args.exact}
    if args.image is not None:
        query_image = read_file(args.image)
        result = client.query(image=query_image, **options)
    elif args.vector is not None:
        result = client.query(vector=one_vector(args.vector, "query"), **options)
    else:
        result = client.query(id=args.id, **options)
        if args.show:
            query_image = fetch_thumbnail(client, args.id)
    print(dumps(result) if args.json else format_neighbors(result))
    if args.show:
        ids = [n.id for matches in result.results for n in matches.neighbors]
        draw = partial(draw_matches, query_image, result)
        write_picture(args, client, ids, draw, "match")
    return 0


def run_embed(args: argparse.Namespace, client: FaceSearchClient) -> int:
    embedding = client.embed(read_file(args.image))
    print(dumps(embedding) if args.json else format_embedding(embedding))
    if args.npy and embedding.faces:
        matrix = np.stack([face.embedding for face in embedding.faces]).astype(np.float32)
        buffer = io.BytesIO()
        np.save(buffer, matrix)
        write_file(args.npy, buffer.getvalue())
    return 0


def run_get(args: argparse.Namespace, client: FaceSearchClient) -> int:
    item = client.get(args.id)
    print(dumps(item) if args.json else format_item(item))
    return 0


def run_delete(args: argparse.Namespace, client: FaceSearchClient) -> int:
    deleted = client.delete(args.ids)
    print(json.dumps({"deleted": deleted}) if args.json else format_delete(deleted))
    return 0


def run_save(args: argparse.Namespace, client: FaceSearchClient) -> int:
    with Spinner("saving", sys.stderr, enabled=_show_progress(args)):
        result = client.save()
    print(dumps(result) if args.json else format_save(result))
    return 0


def run_compact(args: argparse.Namespace, client: FaceSearchClient) -> int:
    with Spinner("compacting", sys.stderr, enabled=_show_progress(args)):
        result = client.compact(force=args.force)
    print(dumps(result) if args.json else format_compact(result))
    return 0


def run_stats(args: argparse.Namespace, client: FaceSearchClient) -> int:
    stats = client.stats()
    print(dumps(stats) if args.json else format_stats(stats))
    return 0


# ---- the parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fsclient",
        description="Search faces and vectors on a facesearch server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, in_subcommand=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, description: str = "") -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=description or help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_global_options(sub, in_subcommand=True)
        return sub

    add = command(
        "add",
        "enroll images and .npy vectors",
        "Enroll the largest face of each image, and each vector of each .npy file (1-D: one "
        "vector; 2-D: one per row).\nFolders are walked recursively in sorted order. The label "
        "is the file's path as given (plus #ROW for 2-D .npy rows).\n--labels-csv: the files a "
        "CSV lists instead, columns file|path, person|label|identity, [metadata].\nExits 1 "
        "if any item failed; each failure is listed with its reason.",
    )
    add.add_argument("paths", nargs="*", metavar="PATH", help="image, .npy file or folder")
    labels = add.add_mutually_exclusive_group()
    labels.add_argument("--label", metavar="TEXT", help="one label for every item")
    labels.add_argument(
        "--label-from-dir", action="store_true", help="label each item by its folder's name"
    )
    labels.add_argument(
        "--labels-csv",
        metavar="FILE",
        help="add the files FILE lists (no PATH), each labelled by its row (paths relative to "
        "FILE's folder)",
    )
    add.add_argument("--metadata", metavar="TEXT", default="", help="free-form data, e.g. JSON")
    add.add_argument(
        "--id", type=non_negative_int, metavar="N", help="the id to store (one item only)"
    )
    add.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help=f"items per request (default: {DEFAULT_IMAGE_BATCH} images, "
        f"{DEFAULT_VECTOR_BATCH} vectors)",
    )
    add.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip a photo whose face is enrolled already (the same photo again); without "
        "it such photos are stored again, and said so",
    )
    add.set_defaults(run=run_add)

    query = command(
        "query",
        "find the nearest neighbours",
        "The nearest neighbours of every face in IMAGE, of a vector, or of an enrolled item.",
    )
    query.add_argument("image", nargs="?", metavar="IMAGE", help="search every face in it")
    query.add_argument("--vector", metavar="FILE.npy", help="search one vector from a .npy file")
    query.add_argument("--id", type=non_negative_int, metavar="N", help="search item N's vector")
    query.add_argument("-k", type=positive_int, default=5, help="neighbours per face (default: 5)")
    query.add_argument(
        "--ef", type=positive_int, metavar="N", help="search breadth (default: the server's)"
    )
    query.add_argument(
        "--exact",
        action="store_true",
        help="brute force over every stored vector: exact neighbours, slow on large indexes",
    )
    query.add_argument(
        "--show", metavar="OUT.png", help="draw the faces and their neighbours (needs Pillow)"
    )
    query.set_defaults(run=run_query)

    embed = command("embed", "print the faces and embeddings of an image")
    embed.add_argument("image", metavar="IMAGE")
    embed.add_argument(
        "--npy", metavar="OUT.npy", help="also write the embeddings, one row per face"
    )
    embed.set_defaults(run=run_embed)

    get = command("get", "print one enrolled item")
    get.add_argument("id", type=non_negative_int, metavar="ID")
    get.set_defaults(run=run_get)

    delete = command("delete", "delete items (all or nothing)")
    delete.add_argument("ids", nargs="+", type=non_negative_int, metavar="ID")
    delete.set_defaults(run=run_delete)

    command("save", "write a snapshot of the index on the server").set_defaults(run=run_save)
    command("stats", "print what the index holds").set_defaults(run=run_stats)
    compact = command(
        "compact", "rebuild the index without deleted items (memory back; ids unchanged)"
    )
    compact.add_argument(
        "--force", action="store_true", help="rebuild even when too few are deleted to pay off"
    )
    compact.set_defaults(run=run_compact)
    register_people_commands(command)  # people, list, forget, rename, identify, verify
    register_collection_commands(command)  # collections [create NAME | drop NAME]
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _connect(args: argparse.Namespace) -> FaceSearchClient:
    """A client with the global options; TLS files and the token fall back to $FSCLIENT_*."""
    token = None
    if args.token_file is not None:
        token = read_file(args.token_file).decode("utf-8", "replace").strip()
        if not token:
            raise LocalFileError(f"{args.token_file}: holds no token")
    return FaceSearchClient(
        args.server,
        timeout=args.timeout,
        tls=True if args.tls else None,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        token=token,
        collection=args.collection,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with _connect(args) as client:
            return int(args.run(args, client))
    except SystemExit as exit:  # --help
        return exit.code if isinstance(exit.code, int) else 0
    except UsageError as error:
        print(f"fsclient: error: {_one_line(str(error))}", file=sys.stderr)
        return 2
    except FaceSearchError as error:
        # UNAVAILABLE's details already say "cannot reach the facesearch server at ...".
        text = error.details if error.code == grpc.StatusCode.UNAVAILABLE else str(error)
        if error.code == grpc.StatusCode.UNAUTHENTICATED:
            text += " (fsclient sends $FSCLIENT_TOKEN, or the token in --token-file)"
        print(f"fsclient: {_one_line(text)}", file=sys.stderr)
        return 1
    except (LocalFileError, MissingPillowError, ValueError) as error:
        print(f"fsclient: error: {_one_line(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fsclient: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `fsclient query ... | head`: stop quietly, and keep Python's exit flush quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def run() -> NoReturn:
    """The `fsclient` command: main(), then leave without Python's interpreter shutdown.

    grpc's C core can deadlock in that shutdown after a failed call (seen in CI: the error
    line printed, then the process hung until killed; grpc/grpc#29560 and #5084 are of the
    kind), and a command line tool has nothing left to clean up once its output is out.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
