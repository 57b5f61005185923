"""The model folder: the model manager dialog, the folder's store (cards, digests), the release catalogue,
downloads and adding backbones/models to the folder."""
