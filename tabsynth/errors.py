"""Exception types. All derive from ValueError so callers can catch bad input generically."""


class TabsynthError(ValueError):
    """Base class for every error tabsynth raises on purpose."""


class DataError(TabsynthError):
    """The input table is unusable as given (names the column and the problem)."""


class MetadataError(TabsynthError):
    """The metadata is inconsistent or does not match the table."""


class NotFittedError(TabsynthError, AttributeError):
    """A method that needs a fitted object was called before ``fit``."""


class SamplingError(TabsynthError):
    """Sampling could not satisfy the request (bad conditions, too few accepted rows)."""


class PrivacyError(TabsynthError):
    """A request would break the differential-privacy guarantee."""


class ModelFileError(TabsynthError):
    """A saved model file is foreign, tampered with or from an incompatible version."""


class HyperParameterError(TabsynthError):
    """A constructor argument (hyper-parameter or setting) is out of range or inconsistent."""


class DistributedError(TabsynthError):
    """A distributed fit cannot run as asked (no torchrun environment, devices, a failed rank)."""
