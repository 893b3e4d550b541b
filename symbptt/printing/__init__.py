"""Printers of the derivation: terminal text, LaTeX/Markdown documents, PyTorch code."""
