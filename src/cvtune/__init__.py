"""cvtune: find the fastest way to run a vision model within an accuracy budget, measured on the target."""

import os as _os

# OpenCV prints importer errors to stderr before raising; cvtune reports them as one clear line instead.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")

__version__ = "0.1.0"
