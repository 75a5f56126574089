"""Transform layer: reversible column encoders and the table-level composition."""

from tabsynth.transform.base import SOFTMAX, TANH, ColumnEncoder, Span
from tabsynth.transform.categorical import OTHER, CategoricalEncoder
from tabsynth.transform.identifiers import IdEncoder
from tabsynth.transform.numeric import NumericEncoder, fit_mixture
from tabsynth.transform.table import TableTransformer

__all__ = [
    "OTHER",
    "SOFTMAX",
    "TANH",
    "CategoricalEncoder",
    "ColumnEncoder",
    "IdEncoder",
    "NumericEncoder",
    "Span",
    "TableTransformer",
    "fit_mixture",
]
