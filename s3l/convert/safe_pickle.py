"""Read ``torch.save`` files (fairseq checkpoints) without fairseq and without running code from the file.

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes name any importable callable and ``REDUCE``
calls it, so ``torch.load(weights_only=False)`` on a downloaded checkpoint can run ``os.system``. fairseq
checkpoints cannot be read with ``torch.load(weights_only=True)`` either: next to the tensors they pickle their
configuration as ``omegaconf.DictConfig`` trees (whose metadata names fairseq dataclasses and enums) or, before
2021, as an ``argparse.Namespace``.

:func:`read_torch_file` first tries ``torch.load(weights_only=True)`` (torch's own allow-list; enough for a
checkpoint whose config was saved as plain dicts). If that refuses a global, it loads again with torch's own
zip / legacy reader but a restricted ``pickle_module`` whose ``find_class`` resolves every name the file asks
for through an allow-list:

* torch's tensor rebuild functions, ``torch.Size``, dtypes, ``Tensor``/``Parameter`` (storages are resolved by
  torch's wrapper before our ``find_class`` is consulted and read as raw bytes from the archive);
* plain containers and scalar types (``collections.OrderedDict``, ``builtins.dict``/``list``/``int``/...);
* ``copyreg._reconstructor`` and ``_codecs.encode`` (protocol-2 plumbing), replaced by inert equivalents;
* every class of the ``omegaconf``, ``fairseq``, ``argparse`` (``Namespace``), ``typing``, ``enum`` and ``numpy``
  modules is replaced by an inert stand-in (a subclass of :class:`Stub`) that only records the arguments and state
  pickle hands it: no code from those packages is imported or run, and they need not be installed.

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) stops the load with an
:class:`~s3l.errors.S3LError` before anything is called. :func:`to_plain` then turns the stand-ins back into plain
dicts, lists and scalars (a ``DictConfig`` into a dict of its node values, a ``Namespace`` into a dict of its
attributes), so the config can be read like JSON.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import io
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any

from s3l.errors import S3LError

# Modules whose classes become inert stand-ins (configuration objects and their metadata).
_STUB_MODULES = ("omegaconf", "fairseq", "typing", "enum", "numpy")
_STUB_NAMES = {("argparse", "Namespace")}
_SAFE_BUILTINS = {
    "int", "float", "complex", "bool", "str", "bytes", "bytearray", "dict", "list", "tuple", "set", "frozenset",
    "slice", "range", "object", "NoneType",
}
_TORCH_FUNCS = {
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "Size"),
    ("torch", "Tensor"),
    ("torch._tensor", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class Stub:
    """Inert stand-in for a class the pickle names: records constructor arguments, state and items, runs nothing."""

    origin = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:  # NEWOBJ calls cls.__new__(cls, *args), REDUCE cls(*args)
        obj = object.__new__(cls)
        obj.__dict__["_stub"] = {"args": args, "state": None, "items": {}, "list": []}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_stub"]["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["_stub"]["items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["_stub"]["list"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["_stub"]["list"].extend(values)

    def __repr__(self) -> str:
        return f"<stand-in for {self.origin}>"


_stub_classes: dict[tuple[str, str], type] = {}


def _stub_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _stub_classes:
        _stub_classes[key] = type(name, (Stub,), {"origin": f"{module}.{name}"})
    return _stub_classes[key]


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Inert ``copyreg._reconstructor``: only stand-ins and plain ``object`` may be rebuilt."""
    if isinstance(cls, type) and issubclass(cls, Stub):
        return cls()
    raise RefusedGlobal(f"copyreg._reconstructor of {getattr(cls, '__qualname__', cls)!r}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for ``bytes``; only text codecs are accepted."""
    if encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise RefusedGlobal(f"_codecs.encode with codec {encoding!r}")
    return text.encode(encoding)


def _resolve(module: str, name: str) -> Any:
    import torch

    # Python 2 names that protocol-2 pickles (torch.save's default) use for builtins, as pickle's own find_class maps
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]

    if (module, name) in _TORCH_FUNCS:
        obj: Any = torch
        for part in module.split(".")[1:] + [name]:
            obj = getattr(obj, part)
        return obj
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module == "builtins" and name in _SAFE_BUILTINS:
        return type(None) if name == "NoneType" else getattr(builtins, name)
    if module == "copyreg" and name == "_reconstructor":
        return _reconstructor
    if module == "_codecs" and name == "encode":
        return _latin1_encode
    if (module, name) in _STUB_NAMES or module.split(".")[0] in _STUB_MODULES:
        return _stub_class(module, name)
    raise RefusedGlobal(f"{module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _resolve(module, name)


def _restricted_module() -> types.ModuleType:
    """A stand-in for the ``pickle`` module that ``torch.load(pickle_module=...)`` accepts."""
    mod = types.ModuleType("s3l_restricted_pickle")
    mod.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
    mod.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()  # type: ignore[attr-defined]
    mod.loads = lambda b, **kw: RestrictedUnpickler(io.BytesIO(b), **kw).load()  # type: ignore[attr-defined]
    mod.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return mod


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def read_torch_file(path: str | Path) -> Any:
    """The object a ``torch.save`` file holds, tensors on CPU, configuration objects as stand-ins (see module doc).

    Raises :class:`S3LError` naming ``path`` if the file is missing, unreadable, a TorchScript archive, or names a
    global outside the allow-list.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: checkpoint not found")
    if _is_torchscript(path):
        raise S3LError(f"{path}: a TorchScript archive, not a checkpoint (s3l does not run TorchScript code)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # a global outside torch's allow-list (omegaconf, argparse): use ours
    except Exception as e:
        raise S3LError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_restricted_module())
    except RefusedGlobal as e:
        raise S3LError(
            f"{path}: refusing to unpickle {e} (only tensors, plain containers and fairseq/omegaconf/argparse "
            "configs are read)"
        ) from None
    except Exception as e:
        raise S3LError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)})") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def to_plain(obj: Any) -> Any:
    """Stand-ins -> plain values: ``DictConfig`` -> dict, ``ListConfig`` -> list, value nodes -> their value,
    ``Namespace`` / dataclass instances -> dict of attributes, enum members -> their value. Tensors are kept.
    omegaconf's missing value ``???`` becomes ``None``; interpolations (``${a.b}``) stay strings."""
    if isinstance(obj, Stub):
        s = obj.__dict__["_stub"]
        state = s["state"]
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        if obj.origin.startswith("omegaconf") and isinstance(state, dict):
            if "_content" in state:
                content = state["_content"]
                return None if content in ("???", None) else to_plain(content)
            if "_val" in state:
                val = state["_val"]
                return None if val == "???" else to_plain(val)
        if isinstance(state, dict):
            return {k: to_plain(v) for k, v in state.items() if not str(k).startswith("_")}
        if s["items"]:
            return {k: to_plain(v) for k, v in s["items"].items()}
        if s["list"]:
            return [to_plain(v) for v in s["list"]]
        if len(s["args"]) == 1:  # an enum member pickled as Enum(value)
            return to_plain(s["args"][0])
        return None
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
