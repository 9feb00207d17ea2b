"""Exceptions a user sees. Each message says which file, record or model is at fault and why."""


class VirnucproError(Exception):
    """Base class for errors caused by the user's input or setup rather than by a bug."""


class InputFormatError(VirnucproError):
    """A reads file that cannot be used: names the file, the record or line, and the problem."""


class ModelNotFoundError(VirnucproError):
    """A model that could not be found: says where it looked and how to provide it."""


class ModelFormatError(VirnucproError):
    """A model file that exists but does not hold what it should (missing or unexpected weights, unsafe pickle)."""


class ConfigurationError(VirnucproError):
    """A setting (environment variable or config value) with an invalid value."""


class MissingInputError(VirnucproError):
    """An upstream file that a step needs has not been produced yet."""


class CorruptDataError(VirnucproError):
    """A stored file whose bytes are not what was written, or that is not the table it should be."""
