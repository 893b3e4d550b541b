"""The one exception family symbptt raises; the CLI turns each into one line and exit status 2."""


class SymbpttError(Exception):
    """Base class of every error symbptt raises on purpose."""


class SpecError(SymbpttError, ValueError):
    """The requested layer, steps or sizes are invalid."""


class DerivationError(SymbpttError):
    """The symbolic derivation could not be built."""


class CodegenError(SymbpttError):
    """Generated code could not be rendered or written."""


class VerificationError(SymbpttError):
    """A verification could not be run (not: it ran and found a mismatch)."""
