"""``--compile``: the network through ``torch.compile``, for long runs on a GPU (issue 17, point 3).

On a lent H200 the bare ``lesion_ms`` network's forward work halved compiled (fp16: 2.38 s to 1.18 s for five
folds of nine 192^3 tiles, after 26-35 s of compiling; ``bench/gpu_network.py``); the whole pipeline compiled on a
GPU is not measured yet. So it may pay in ``batch`` and in a persistent worker, not for one interactive image; on
this project's 2-core CPU it does not pay at all (0.87-1.02x, 24-65 s to compile, 0.12-0.45 GB more memory;
``bench/compile.py``). Hence opt-in, and never in the panel.

The compiled module wraps the same network object, so fold switching (:func:`.network.load_weights` assigns each
fold's tensors to it) needs no recompilation: dynamo takes the parameters as inputs. It compiles on a blank tile
once the first fold's weights are in, under the job's autocast and inference mode, so that the time it takes is
its own (``compile_s``) and a failure while compiling (no C++ compiler for the CPU backend, no Triton for CUDA)
falls back to the plain network with a warning instead of failing the image; such a precision is not tried again
by this model. A new precision compiles once more (autocast is part of what dynamo guards).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CompileChoice", "NetworkCompiler"]


@dataclass(frozen=True)
class CompileChoice:
    """Whether the network ran compiled, the seconds this job spent compiling (0 when an earlier job had), and why
    it did not when it was asked to (None otherwise)."""

    requested: bool
    compiled: bool
    compile_s: float = 0.0
    failure: str | None = None

    def record(self) -> dict[str, Any]:
        return {"requested": self.requested, "compiled": self.compiled, "compile_s": round(self.compile_s, 2),
                "failure": self.failure}

    def warning(self) -> str | None:
        """The one-line warning for a compilation that failed, else None."""
        return None if self.failure is None else f"--compile: torch.compile failed ({self.failure}); ran without it"


class NetworkCompiler:
    """Holds the plain network (what fold weights are loaded into) and, once asked for, its compiled wrapper."""

    def __init__(self, network: Any) -> None:
        self.eager = network
        self._compiled: Any = None
        self._ready: set[str] = set()  # precisions compiled for
        self._failures: dict[str, str] = {}  # precision: why compiling failed

    def will_compile(self, precision: str) -> bool:
        """Whether asking for the compiled network in ``precision`` compiles now (it has not yet, nor failed)."""
        return precision not in self._ready and precision not in self._failures

    def network_for(self, requested: bool, precision: str, context: Callable[[], Any], tile_shape: tuple[int, ...],
                    device: Any) -> tuple[Any, CompileChoice]:
        """The module to run for this job and the choice made. ``context`` gives the job's autocast context;
        ``tile_shape`` is one tile's ``(channels, *patch)``, the only input shape the sliding window uses."""
        if not requested:
            return self.eager, CompileChoice(False, False)
        if precision in self._ready:
            return self._compiled, CompileChoice(True, True)
        if precision in self._failures:
            return self.eager, CompileChoice(True, False, failure=self._failures[precision])
        return self._compile(precision, context(), tile_shape, device)

    def _compile(self, precision: str, autocast: Any, tile_shape: tuple[int, ...],
                 device: Any) -> tuple[Any, CompileChoice]:
        """Compile for ``precision`` on one blank tile under ``autocast``; on failure the plain network."""
        import torch

        started = time.perf_counter()
        # Made outside inference mode, as nnunetv2's tile thread makes its tiles: dynamo guards on the difference.
        blank = torch.zeros((1, *tile_shape), device=device)
        try:
            compiled = torch.compile(self.eager) if self._compiled is None else self._compiled
            with torch.inference_mode(), autocast:
                compiled(blank)
        except torch.cuda.OutOfMemoryError:  # this image's problem, not the compiler's: try again next time
            torch.cuda.empty_cache()
            return self.eager, CompileChoice(True, False, time.perf_counter() - started,
                                             "out of GPU memory while compiling")
        except Exception as error:  # torch raises its backends' own errors (compiler missing, Triton absent)
            why = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]  # the cause, not torch's hints
            self._failures[precision] = why
            return self.eager, CompileChoice(True, False, time.perf_counter() - started, why)
        self._compiled = compiled
        self._ready.add(precision)
        return compiled, CompileChoice(True, True, time.perf_counter() - started)
