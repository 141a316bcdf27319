"""fwi: seismic-to-velocity inversion for the Kaggle Yale/UNC-CH Geophysical Waveform Inversion competition."""

__version__ = "0.1.0"
