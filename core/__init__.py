"""Layer Lab's engine: data, layer specs, models, training, stats and inspection.

Pure Python + Keras + scikit-learn. Never imports streamlit; TensorFlow/Keras are
imported lazily by the modules that need them so the app starts quickly.
"""
from core.errors import DataError, LayerLabError, SpecError

__all__ = ["LayerLabError", "SpecError", "DataError"]
