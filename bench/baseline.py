"""The usual open-source fashion recommender, implemented faithfully as the baseline.

This is the pipeline that the widely copied "fashion recommender system" code runs
(ResNet-50 feature extractor + scikit-learn nearest neighbours):

* ResNet-50 in fp32, one image at a time, ``fc`` removed (pooled 2048-d features);
* full PIL decode, ``Resize((224, 224))`` (squashes, no aspect kept), ``ToTensor``,
  ImageNet normalisation;
* features L2-normalised;
* search: ``NearestNeighbors(n_neighbors=10, algorithm='brute', metric='euclidean')``
  fitted on the whole catalogue for every query, then ``kneighbors``.

It gets exactly the same weights as our path (the caller passes a state dict).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from sklearn.neighbors import NearestNeighbors
from torchvision import transforms
from torchvision.models import resnet50


class BaselineRecommender:
    def __init__(self, state_dict: dict[str, torch.Tensor]) -> None:
        net = resnet50(weights=None)
        net.load_state_dict(state_dict)
        net.fc = torch.nn.Identity()
        self.model = net.eval()
        self.transform = transforms.Compose(
            [
                transforms.Resize((224, 224)),
                transforms.ToTensor(),
                transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
            ]
        )

    def embed(self, data: bytes) -> np.ndarray:
        """One image (file bytes) → one unit-length 2048-d feature vector."""
        img = Image.open(io.BytesIO(data)).convert("RGB")
        x = self.transform(img).unsqueeze(0)
        with torch.no_grad():
            feats = self.model(x).numpy().flatten()
        return feats / np.linalg.norm(feats)

    @staticmethod
    def search(feature: np.ndarray, catalogue: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Indices and distances of the k nearest catalogue rows, refitting as the usual code does."""
        neighbors = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean")
        neighbors.fit(catalogue)
        distances, indices = neighbors.kneighbors([feature])
        return indices[0], distances[0]

    def recommend(self, data: bytes, catalogue: np.ndarray, k: int = 10) -> np.ndarray:
        return self.search(self.embed(data), catalogue, k)[0]
