"""Native PyTorch backend: `nn.Module` definitions (models.py) and trainer (backend.py)."""
