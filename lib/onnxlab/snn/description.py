"""A Nengo network described once, as data, and rendered two ways: Nengo objects, or a Python script.

The ONNX -> Nengo builders (`onnxlab.snn.builders`) never create a Nengo object themselves. They
append statements to a `NetworkDescription`:

- `Assign` — ``var = <call>``, e.g. ``ens0 = nengo.Ensemble(...)``;
- `Connect` — a ``nengo.Connection`` without synapse, trainable in NengoDL or not.

Arguments are plain Python values, `Weight` (an ONNX constant by name: ``W['conv1.w']`` in a
script, the array when built), `Var` (an earlier statement's object, or its ``.neurons``) and
nested `Call` s of functions in `NAMESPACE`. `NetworkDescription.realize` evaluates the statements
into a ``nengo.Network``; `NetworkDescription.render` writes them as Python lines. Because both
come from the same statements, the generated script builds exactly the network `to_nengo` builds.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxlab.errors import InvalidArgument

#: Top-level names a `Call` may start with, and the module each stands for (in scripts: the imports).
MODULES = {"nengo": "nengo", "nengo_dl": "nengo_dl", "np": "numpy", "layout": "onnxlab.snn.layout"}
#: Helper functions (called by bare name), all from this module.
HELPERS_MODULE = "onnxlab.snn.transforms"


class Expr:
    """Something a statement's arguments can hold besides plain values."""

    def evaluate(self, env: "Environment") -> Any:
        raise NotImplementedError

    def code(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Weight(Expr):
    """The ONNX constant ``name`` (an initializer or Constant node of the file)."""

    name: str

    def evaluate(self, env):
        return env.weights[self.name]

    def code(self):
        return f"W[{self.name!r}]"


@dataclass(frozen=True)
class Var(Expr):
    """The object an `Assign` bound to ``name``, or its ``attribute`` (``neurons`` of an ensemble)."""

    name: str
    attribute: str | None = None

    def evaluate(self, env):
        return self.evaluate_in(env.objects)

    def evaluate_in(self, objects: dict[str, Any]) -> Any:
        """The object (or attribute) among the built ``objects``."""
        obj = objects[self.name]
        return getattr(obj, self.attribute) if self.attribute else obj

    def code(self):
        return f"{self.name}.{self.attribute}" if self.attribute else self.name

    def neurons(self) -> "Var":
        return Var(self.name, "neurons")


@dataclass(frozen=True)
class Call(Expr):
    """``function(*args, **kwargs)``; ``function`` is a dotted name under `MODULES` or a helper's bare name."""

    function: str
    args: tuple = ()
    kwargs: tuple = ()

    @classmethod
    def of(cls, function: str, *args: Any, **kwargs: Any) -> "Call":
        return cls(function, tuple(args), tuple(kwargs.items()))

    def evaluate(self, env):
        return env.resolve(self.function)(*(evaluate(a, env) for a in self.args),
                                          **{k: evaluate(v, env) for k, v in self.kwargs})

    def code(self):
        return f"{self.function}(" + ", ".join([*(render(a) for a in self.args),
                                                 *(f"{k}={render(v)}" for k, v in self.kwargs)]) + ")"


def evaluate(value: Any, env: "Environment") -> Any:
    """The value of a statement argument."""
    if isinstance(value, Expr):
        return value.evaluate(env)
    if isinstance(value, (tuple, list)):
        return type(value)(evaluate(v, env) for v in value)
    return value


def render(value: Any) -> str:
    """The Python source of a statement argument (plain values must have an exact ``repr``)."""
    if isinstance(value, Expr):
        return value.code()
    if isinstance(value, tuple):
        return "(" + ", ".join(render(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, (np.integer, np.floating)):
        return repr(value.item())
    if isinstance(value, np.ndarray):
        raise InvalidArgument("arrays cannot be rendered as code: compute them with a helper call from shapes or weights")
    return repr(value)


@dataclass
class Environment:
    """What evaluation sees: the file's constants, the objects built so far, and the resolved names."""

    weights: dict[str, np.ndarray]
    objects: dict[str, Any] = field(default_factory=dict)

    def resolve(self, function: str) -> Any:
        head, _, rest = function.partition(".")
        if head == "nengo_dl":
            from onnxlab.reproducibility import import_nengo_dl

            import_nengo_dl()
        target = importlib.import_module(MODULES[head] if head in MODULES else HELPERS_MODULE)
        if head not in MODULES:
            rest = function
        for part in rest.split(".") if rest else []:
            target = getattr(target, part)
        return target


@dataclass(frozen=True)
class Assign:
    """``var = value``; an object NengoDL could train (an ensemble) is ``trainable`` or fixed."""

    var: str
    value: Call
    trainable: bool = True


@dataclass(frozen=True)
class Connect:
    """``nengo.Connection(pre, post, transform=..., synapse=...)``; only ONNX weights are ``trainable``.

    ``synapse`` is a lowpass time constant in seconds, or None (instantaneous, the default).
    """

    pre: Var
    post: Var
    transform: Any = None
    trainable: bool = False
    synapse: float | None = None


@dataclass
class NetworkDescription:
    """The statements that build one network, in order, and its named inputs and outputs."""

    label: str
    statements: list = field(default_factory=list)
    #: ONNX input name -> the input node's Var; output name -> unfiltered / filtered probe Var.
    inputs: dict[str, Var] = field(default_factory=dict)
    outputs: dict[str, Var] = field(default_factory=dict)
    filtered_outputs: dict[str, Var] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def assign(self, prefix: str, value: Call, *, trainable: bool = True) -> Var:
        """Append ``<prefix><n> = value`` with the next free number; return its Var. ``trainable=False`` marks
        the object fixed in NengoDL (for ensembles: their biases)."""
        n = self._counts.get(prefix, 0)
        self._counts[prefix] = n + 1
        self.statements.append(Assign(f"{prefix}{n}", value, trainable))
        return Var(f"{prefix}{n}")

    def connect(self, pre: Var, post: Var, transform: Any = None, *, trainable: bool = False,
                synapse: float | None = None) -> None:
        self.statements.append(Connect(pre, post, transform, trainable, synapse))

    def weights_used(self) -> set[str]:
        """The names of every `Weight` the statements read."""
        found: set[str] = set()

        def visit(value: Any) -> None:
            if isinstance(value, Weight):
                found.add(value.name)
            elif isinstance(value, Call):
                for v in [*value.args, *(v for _, v in value.kwargs)]:
                    visit(v)
            elif isinstance(value, (tuple, list)):
                for v in value:
                    visit(v)

        for statement in self.statements:
            visit(statement.value if isinstance(statement, Assign) else statement.transform)
        return found

    def realize(self, weights: dict[str, np.ndarray]) -> tuple[Any, dict[str, Any]]:
        """Build the ``nengo.Network``; returns it and every assigned object by variable name."""
        import nengo
        from onnxlab.reproducibility import import_nengo_dl

        nengo_dl = import_nengo_dl()

        env = Environment(weights)
        with nengo.Network(label=self.label) as network:
            nengo_dl.configure_settings(trainable=None)  # lets ensembles and connections be marked fixed
            for statement in self.statements:
                if isinstance(statement, Assign):
                    obj = env.objects[statement.var] = statement.value.evaluate(env)
                    if not statement.trainable:
                        network.config[obj].trainable = False
                    continue
                conn = nengo.Connection(statement.pre.evaluate(env), statement.post.evaluate(env),
                                        transform=evaluate(statement.transform, env), synapse=statement.synapse)
                if not statement.trainable:
                    network.config[conn].trainable = False
        return network, env.objects

    def render(self) -> list[str]:
        """The statements as Python lines (fixed objects wrapped in the script's ``fixed(...)``)."""
        lines = []
        for statement in self.statements:
            if isinstance(statement, Assign):
                value = statement.value.code()
                lines.append(f"{statement.var} = {value if statement.trainable else f'fixed({value})'}")
                continue
            args = f"{statement.pre.code()}, {statement.post.code()}"
            if statement.transform is not None:
                args += f", transform={render(statement.transform)}"
            line = f"nengo.Connection({args}, synapse={render(statement.synapse)})"
            lines.append(line if statement.trainable else f"fixed({line})")
        return lines
