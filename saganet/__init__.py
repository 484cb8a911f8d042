"""SAGANet: segmentation-aware video-to-audio generation."""

__version__ = "0.1.0"
