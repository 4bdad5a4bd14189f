"""fawkes-eval: audit face-recognition privacy cloaks against many recognizers."""

__version__ = "0.1.0"
