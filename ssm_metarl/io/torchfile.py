"""Reading a torch file's structure without running it: zip checksums, pickle imports
and tensor records.

`inspect_torch_file` says what is wrong with a file before `torch.load` touches it:
an *unsafe* pickle (a global outside torch's tensor-rebuild set), a *damaged* file
(truncated, a record missing or short, a failed CRC) or the *wrong* kind of file. The
pickle is read as opcodes (`pickletools.genops`), never executed. Used by
`ssm_metarl.io.checkpoint`; taught in chapter 1 (`01_state_space_models`).
"""

from __future__ import annotations

import pickletools
import warnings
import zipfile
from pathlib import Path

import torch

__all__ = ["inspect_torch_file", "safe_globals"]


#: What reading a truncated or corrupt zip archive raises: each means "damaged".
READ_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError)


def safe_globals() -> set[str]:
    """The globals `weights_only` loading allows: torch's tensor-rebuild set and any the
    user registered (chapter 1)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        found = set(_get_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - another torch layout
        found = {
            "collections.OrderedDict",
            "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_parameter",
            "torch.FloatStorage",
            "torch.LongStorage",
            "torch.DoubleStorage",
            "torch.IntStorage",
        }
    for g in torch.serialization.get_safe_globals():
        obj = g[0] if isinstance(g, tuple) else g
        name = getattr(obj, "__qualname__", getattr(obj, "__name__", ""))
        found.add(f"{getattr(obj, '__module__', '')}.{name}")
    return found


def inspect_torch_file(path: str | Path) -> tuple[str, str] | None:
    """`None` if `path` is a sound torch file whose pickle imports only safe globals,
    else `(category, reason)` with category "unsafe", "damaged" or "wrong" and a
    one-line reason.

    Order: the zip's end record (truncation), the pickle record's CRC, the pickle's
    imports (unsafe), the stream's end, every record's CRC, and every tensor record the
    pickle references (present and long enough). Defined in chapter 1
    (`01_state_space_models`).
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    archive = None
    if head[:1] == b"\x80":  # a raw pickle stream: torch's legacy format or pickle.dump
        data = path.read_bytes()
    elif head != b"PK\x03\x04":
        # perhaps a text-protocol (0) pickle
        found, _, complete, _ = scan_pickle(path.read_bytes())
        if complete and set(found) - safe_globals():
            return "unsafe", _unsafe(found)
        return "wrong", "not a checkpoint (not a torch file)"
    elif not zipfile.is_zipfile(path):
        return (
            "damaged",
            "the checkpoint is truncated (its zip archive has no end record)",
        )
    else:
        try:
            archive = zipfile.ZipFile(path)
            names = archive.namelist()
            pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pickles:
                if any(
                    n.endswith(("/version", "/byteorder")) or "/data/" in n
                    for n in names
                ):
                    return (
                        "damaged",
                        "the checkpoint is damaged (its pickle record data.pkl is "
                        "missing)",
                    )
                return "wrong", "not a checkpoint (a zip archive without torch data)"
            data = archive.read(pickles[0])  # checks this record's CRC
            others = [
                archive.read(n) for n in names if n.endswith(".pkl") and n != pickles[0]
            ]
        except READ_ERRORS as bad:
            return "damaged", f"the checkpoint is damaged ({bad})"
    imports, pids, complete, end = scan_pickle(data)
    # any other pickle in the archive is judged too
    for other in [] if archive is None else others:
        imports += scan_pickle(other)[0]
    # torch's legacy format: 5 pickles, then raw data
    for _ in range(4 if archive is None and complete else 0):
        if end >= len(data):
            break
        found, _, whole, length = scan_pickle(data[end:])
        if not whole:
            break
        imports, end = imports + found, end + length
    if set(imports) - safe_globals():
        return "unsafe", _unsafe(imports)
    if archive is None:
        if not complete:
            return (
                "damaged",
                "the checkpoint is truncated (its pickle stream ends early)",
            )
        return (
            None
            if imports
            else ("wrong", "not a checkpoint (a plain pickle, not a torch file)")
        )
    with archive:
        if not complete:
            return (
                "damaged",
                "the checkpoint is damaged (its pickle record is cut short)",
            )
        try:
            bad_member = archive.testzip()  # every record's CRC
        except READ_ERRORS as bad:
            return "damaged", f"the checkpoint is damaged ({bad})"
        if bad_member is not None:
            return (
                "damaged",
                f"the checkpoint is damaged (record {bad_member} fails its CRC check)",
            )
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    prefix = pickles[0][: -len("data.pkl")]
    for pid in pids:
        if len(pid) != 5 or pid[0] != "storage" or not isinstance(pid[4], int):
            continue
        record = f"{prefix}data/{pid[2]}"
        if record not in sizes:
            return (
                "damaged",
                f"the checkpoint is damaged (tensor record {record} is missing)",
            )
        need = pid[4] * _itemsize(str(pid[1]))
        if sizes[record] < need:
            return (
                "damaged",
                f"the checkpoint is damaged (tensor record {record} has "
                f"{sizes[record]} bytes, needs {need})",
            )
    return None


def _unsafe(imports: list[str]) -> str:
    unsafe = sorted(set(imports) - safe_globals())
    return (
        f"refused to load: the file's pickle imports {', '.join(unsafe[:3])}, which "
        "could run code; "
        "only weights are loaded (weights_only=True)"
    )


def _itemsize(storage: str) -> int:
    with warnings.catch_warnings():  # TypedStorage's deprecation warning
        warnings.simplefilter("ignore")
        dtype = getattr(
            getattr(torch, storage.rsplit(".", 1)[-1], None), "dtype", torch.uint8
        )
    return dtype.itemsize if isinstance(dtype, torch.dtype) else 1


_NOT_VALUES = {"GLOBAL", "INST", "PROTO", "FRAME"}
_MARKED = {
    "TUPLE",
    "LIST",
    "DICT",
    "SETITEMS",
    "APPENDS",
    "OBJ",
    "INST",
    "FROZENSET",
    "ADDITEMS",
    "POP_MARK",
}


def scan_pickle(data: bytes) -> tuple[list[str], list[tuple], bool, int]:
    """Read a pickle's opcodes without running them: the globals it imports, the
    persistent ids (torch's tensor records) it references, whether the stream reaches
    its STOP, and where it ends."""
    imports, pids, memo, frames, last, complete, ops = [], [], {}, [[]], None, False, []
    try:
        for op in pickletools.genops(data):
            ops.append(op)
        complete = True
    except Exception:  # a damaged stream: judge what was readable before the damage
        pass
    for i, (op, arg, _) in enumerate(ops):
        name, value = op.name, None
        if name.startswith("EXT"):  # copyreg's extension registry: an import by number
            imports.append(f"<extension code {arg}>")
        elif (
            isinstance(arg, (str, int))
            and not name.endswith(("PUT", "GET"))
            and name not in _NOT_VALUES
        ):
            value = arg
        elif name.endswith("GET"):
            value = memo.get(arg)
        elif name in ("GLOBAL", "INST"):
            value = arg.replace(" ", ".")
            imports.append(value)
        elif name == "STACK_GLOBAL":
            top = frames[-1][-2:]
            value = ".".join(map(str, top)) if len(top) == 2 else "<a computed global>"
            imports.append(value)
            del frames[-1][-2:]
        if name.endswith("PUT"):
            memo[arg] = last
        elif name == "MEMOIZE":
            memo[len(memo)] = last
        elif name == "MARK":
            frames.append([])
        elif name in _MARKED:
            items = frames.pop() if len(frames) > 1 else []
            if name == "TUPLE":
                value = tuple(items)
                after = [
                    o.name
                    for o, _, _ in ops[i + 1 : i + 3]
                    if not o.name.endswith("PUT") and o.name != "MEMOIZE"
                ]
                # a persistent id: ('storage', type, key, location, numel)
                if after[:1] == ["BINPERSID"]:
                    pids.append(value)
        if value is not None:
            frames[-1].append(value)
        if not (name.endswith("PUT") or name == "MEMOIZE"):
            last = value
    return imports, pids, complete, (ops[-1][2] + 1 if complete else len(data))
