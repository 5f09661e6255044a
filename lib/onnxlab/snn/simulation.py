"""How to simulate an ONNX-SNN file, stored in the file itself (``metadata_props``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import onnx

from onnxlab.errors import SNNError

#: Prefix of the simulation keys in ``metadata_props``.
METADATA_PREFIX = "onnxsnn."


@dataclass(frozen=True)
class Simulation:
    """Simulation settings of a spiking network.

    Attributes
    ----------
    dt
        Simulator time step, seconds.
    n_steps
        Time steps each input is presented for.
    synapse
        Time constant (seconds) of the lowpass filter on the output probe; None for no filter.
    seed
        Base seed of the ensembles (ensemble i gets ``seed + i``): it fixes the neurons' random
        initial state (Nengo starts LIF voltages uniformly in [0, 1)), so the same file always
        produces the same spikes.
    layer_synapse
        Time constant (seconds) of a lowpass filter on every connection out of a neuron layer, as
        ``nengo_dl.Converter(synapse=...)`` sets it: spikes are smoothed before the next layer sums
        them. None (the default): no filter, the ONNX graph's instantaneous semantics.

    Defaults are those of NengoDL's spiking MNIST example (dt 1 ms, 30 steps, 0.1 s synapse).
    """

    dt: float = 0.001
    n_steps: int = 30
    synapse: float | None = 0.1
    seed: int = 0
    layer_synapse: float | None = None

    def __post_init__(self) -> None:
        if not self.dt > 0:
            raise SNNError(f"simulation dt must be > 0 seconds, got {self.dt}")
        if int(self.n_steps) != self.n_steps or self.n_steps < 1:
            raise SNNError(f"simulation n_steps must be a positive integer, got {self.n_steps}")
        for name in ("synapse", "layer_synapse"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise SNNError(f"simulation {name} must be >= 0 seconds or None, got {value}")

    def write(self, model: onnx.ModelProto) -> None:
        """Store these settings in ``model.metadata_props`` (replacing earlier ones)."""
        keep = [p for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
        for key, value in asdict(self).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = METADATA_PREFIX + key, "none" if value is None else repr(value)

    @classmethod
    def read(cls, model: onnx.ModelProto) -> "Simulation":
        """Settings stored in ``model``; missing keys take the defaults."""
        stored = {p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props
                  if p.key.startswith(METADATA_PREFIX)}
        values = {}
        for f in fields(cls):
            if f.name not in stored:
                continue
            text = stored[f.name]
            try:
                values[f.name] = None if text == "none" else (int(text) if f.type in (int, "int") else float(text))
            except ValueError:
                raise SNNError(f"metadata {METADATA_PREFIX}{f.name}={text!r} is not a number") from None
        return cls(**values)
