"""Each layer's identity in a checkpoint: which code its name stood for, so a load cannot rebuild another.

A checkpoint stores a layer by name: ``Dense`` and ``Dropout`` by their type, an activation by
its registry name, which :func:`gradkit.activations.get` resolves again at load. The name alone
does not say which code it stood for: a ``custom_activation(..., name="relu")`` would come back
as the built-in ReLU, and a name registered again by other code would come back as that code.
So format version 2 stores, beside the architecture, one entry per layer::

    {"name": "leaky_relu", "builtin": true, "params": {"negative_slope": 0.2, "axis": -1}}
    {"name": "swish", "builtin": false, "module": "my_plugin", "qualname": "swish_forward",
     "params": {"axis": -1}}

* ``name``: the activation's registry name, or the layer type (``"Dense"``, ``"Dropout"``);
* ``builtin``: whether it is gradkit's own class for that name (and gradkit's own layer class);
* ``params``: every constructor parameter, as the layer's config holds them;
* ``module`` and ``qualname`` (only when not built in): where its code is defined: the class,
  or for a :func:`gradkit.custom_activation` its ``forward`` function (every custom activation
  is an instance of one gradkit class, so the class would not tell two apart). A file that
  ``gradkit --plugin path/to/stem.py`` imported counts as the module ``stem``, the name
  ``import stem`` gives it (the CLI's own name for it depends on the file's absolute path).

:func:`record` gives a model's entries and refuses an activation named like a built-in that is
not it; :func:`mismatch` compares stored entries with those of the model the architecture
rebuilds in this process. ``save`` runs both (it refuses what ``load`` would refuse), ``load``
the second. Entries are compared exactly, as canonical JSON: ``1`` is neither ``1.0`` nor
``true``. A built-in's module is not stored (gradkit may move its own classes); a custom
one's module and qualified name are, and must match.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from .. import activations
from ..custom import CustomActivation, CustomElementwiseActivation
from .layers import ActivationLayer, Dense, Dropout, Layer
from .model import Sequential

__all__ = ["identity", "mismatch", "record"]

#: a config's ``"type"`` -> the class :func:`gradkit.nn.layers.from_config` builds for it
_LAYER_CLASSES: dict[str, type[Layer]] = {"Dense": Dense, "Dropout": Dropout, "Activation": ActivationLayer}
#: the module name ``gradkit --plugin path/to/stem.py`` gives the file it imports (:mod:`gradkit.apps.cli`): it
#: depends on the file's absolute path, so the identity records ``stem``, what ``import stem`` names it
_PATH_PLUGIN = re.compile(r"gradkit_plugin_(\w+)_[0-9a-f]{12}")
#: the longest value a message quotes (a hostile header may hold megabytes)
_QUOTE = 300


@functools.cache
def _builtin_classes() -> dict[str, type]:
    """Each built-in activation name's class (built-in names are sealed: this never changes)."""
    return {name: type(activations.get(name)) for name in activations.builtin_names()}


def identity(layer: Layer) -> dict[str, Any]:
    """The identity entry of ``layer``, as JSON values (see the module docstring).

    Parameters
    ----------
    layer : Layer
        A layer whose ``config()`` is JSON-serializable.

    Returns
    -------
    dict
        ``name``, ``builtin`` and ``params``; ``module`` and ``qualname`` when not built in.
    """
    config = json.loads(json.dumps(layer.config()))
    own = _LAYER_CLASSES.get(config.get("type")) is type(layer)
    act = layer.activation if isinstance(layer, ActivationLayer) else None
    if act is None:
        name, params = config.get("type"), {key: value for key, value in config.items() if key != "type"}
    else:
        name, params = act.name, config.get("params", {})
    builtin = own and (act is None or _builtin_classes().get(name) is type(act))
    entry: dict[str, Any] = {"name": name, "builtin": builtin, "params": params}
    if not builtin:
        entry["module"], entry["qualname"] = _origin(act if own else layer)
    return entry


def _origin(obj: Any) -> tuple[str, str]:
    """``(module, qualified name)`` of what defines ``obj``: a custom activation's forward function, else its class."""
    target = obj.forward_fn if isinstance(obj, (CustomActivation, CustomElementwiseActivation)) else type(obj)
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    if not isinstance(module, str):  # a callable object without one (functools.partial): its type's
        module = type(target).__module__
    if not isinstance(qualname, str):
        qualname = type(target).__qualname__
    plugin = _PATH_PLUGIN.fullmatch(module)
    return (plugin.group(1) if plugin else module), qualname


def record(model: Sequential) -> list[dict[str, Any]]:
    """The identity entries :func:`gradkit.nn.save` stores, one per layer of ``model``.

    Parameters
    ----------
    model : Sequential
        Its layers' configs are JSON-serializable (``save`` checked it).

    Returns
    -------
    list of dict
        :func:`identity` of each layer, in order.

    Raises
    ------
    ValueError
        An activation carries a built-in's name but is not that built-in (a
        ``custom_activation(..., name="relu")``, a subclass of ``ReLU``): load would
        rebuild the built-in, which computes something else.
    """
    entries = []
    for i, layer in enumerate(model.layers):
        entry = identity(layer)
        name = entry["name"]
        if isinstance(layer, ActivationLayer) and name in _builtin_classes():
            builtin = _builtin_classes()[name]
            if type(layer.activation) is not builtin:
                raise ValueError(
                    f"layer {i}: its activation is named {name!r}, the name of gradkit's built-in "
                    f"{builtin.__name__}, but it is {_text(entry)}, not the built-in: load would rebuild "
                    f"{builtin.__name__}. Give the custom function a distinct name and register it: "
                    f"act = gk.custom_activation(..., name='my_{name}'), then gk.activations.register('my_{name}', act)"
                )
        entries.append(entry)
    return entries


def mismatch(stored: Any, rebuilt: Sequential, *, saving: bool = False) -> str | None:
    """How ``stored`` entries differ from the identities of ``rebuilt``'s layers, or None.

    Parameters
    ----------
    stored : object
        The header's ``identity`` (from the file: anything JSON can hold), or :func:`record`'s list.
    rebuilt : Sequential
        The model the architecture builds in this process.
    saving : bool, default False
        Word the message for :func:`gradkit.nn.save` (the model's layer against what load
        would rebuild) instead of :func:`gradkit.nn.load` (the file against what the name
        resolves to now).

    Returns
    -------
    str or None
        One line naming the first layer that differs, both identities and what to do.
    """
    n = len(rebuilt.layers)
    if not isinstance(stored, list):
        return f"the header's 'identity' must be a list of {n} layer entries; got {type(stored).__name__}"
    if len(stored) != n:
        return f"the header's 'identity' lists {len(stored)} layer entries; the architecture has {n} layers"
    for i, (entry, layer) in enumerate(zip(stored, rebuilt.layers, strict=True)):
        now = identity(layer)
        if _canonical(entry) != _canonical(now):
            return _differs(i, entry, now, saving)
    return None


def _differs(i: int, entry: Any, now: dict[str, Any], saving: bool) -> str:
    """The message for layer ``i``, whose stored ``entry`` is not ``now``, what its config rebuilds."""
    name, said, found = now["name"], _text(entry), _text(now)
    if said == found:  # the difference is in what the text leaves out (an extra key, a type)
        said = _short(_canonical(entry) or entry, quoted=False)
    if saving:
        return (f"layer {i}: the model's layer is {said}, but load would rebuild {found} (what its name "
                f"resolves to now). A checkpoint rebuilds layers by name: use gradkit's own layer classes and "
                f"register the model's own activation under its name (gk.activations.register(act.name, act))")
    if isinstance(entry, dict) and _canonical(_without_params(entry)) == _canonical(_without_params(now)):
        return (f"layer {i} ({name!r}): the file's identity stores params {_params(entry.get('params'))}, but its "
                f"architecture rebuilds params {_params(now['params'])}: the header was edited or is corrupt")
    return (f"layer {i}: the file says {said}, but {name!r} now resolves to {found}. Import or register what the "
            f"model was saved with under that name before loading (or save the model again)")


def _without_params(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key != "params"}


def _text(entry: Any) -> str:
    """An identity entry in words (a malformed one quoted)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return _short(entry)
    params = _params(entry.get("params"))
    if entry.get("builtin") is True:
        return f"gradkit's built-in {entry['name']!r} with params {params}"
    module, qualname = entry.get("module"), entry.get("qualname")
    if entry.get("builtin") is not False or not isinstance(module, str) or not isinstance(qualname, str):
        return _short(_canonical(entry) or entry, quoted=False)
    return f"the custom {entry['name']!r} defined by {qualname!r} in module {module!r} with params {params}"


def _canonical(value: Any) -> str | None:
    """``value`` as canonical JSON (sorted keys; ``1``, ``1.0`` and ``true`` differ), or None if it has none."""
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return None


def _params(value: Any) -> str:
    """Parameters as JSON text (exact: ``1`` and ``1.0`` read differently), cut for a message."""
    return _short(_canonical(value) or value, quoted=False)


def _short(value: Any, *, quoted: bool = True) -> str:
    text = repr(value) if quoted or not isinstance(value, str) else value
    return text if len(text) <= _QUOTE else f"{text[:_QUOTE]}... ({len(text)} characters)"
