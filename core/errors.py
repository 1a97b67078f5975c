"""The one error type the project raises for anything a user can fix."""
from __future__ import annotations


class LayerLabError(Exception):
    """A problem explained in plain sentences: what is wrong and what to do.

    Pages show ``str(err)`` as it is; it never needs a traceback to be understood.

    >>> str(LayerLabError("The file is empty. Choose another one."))
    'The file is empty. Choose another one.'
    """


class SpecError(LayerLabError):
    """An invalid layer stack or recipe.

    ``problems`` holds every sentence found; ``layer`` is the 1-based index of the
    first offending layer, or ``None`` when the problem concerns the whole stack.

    >>> err = SpecError(["Layer 2 needs a size.", "The last layer must be Dense 10."],
    ...                 layers=[2, None])
    >>> str(err)
    'Layer 2 needs a size. The last layer must be Dense 10.'
    >>> err.layer, err.layers
    (2, [2, None])
    >>> SpecError("Add a layer.").layer is None
    True
    """

    def __init__(self, problems: list[str] | str, layer: int | None = None,
                 layers: list[int | None] | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.layers = layers if layers is not None else [layer] * len(self.problems)
        self.layer = layer if layer is not None else (self.layers[0] if self.layers else None)
        super().__init__(" ".join(self.problems))


class DataError(LayerLabError):
    """MNIST could not be found or read.

    >>> isinstance(DataError("MNIST was not found."), LayerLabError)
    True
    """


class StorageError(LayerLabError):
    """A file could not be saved or read back (a full disk, a damaged record).

    The sentence never names a server path: that goes to the server's log.
    """
