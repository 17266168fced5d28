"""Model builders by architecture name (timm-style `@register_model`, one `create_model`).

The registry lives in toolkit.models.registry; importing this package imports every builder module, so each
registers itself: mlp, cnn, rnn (rnn/lstm/gru), transformer, autoencoder, gan, and the pretrained
torchvision backbones (mobilenet, resnet, efficientnet).
"""

from toolkit.models import autoencoder, backbones, cnn, gan, mlp, rnn, transformer  # noqa: F401  (registers the builders)
from toolkit.models.registry import ModelEntry, create_model, list_models, model_entry, register_model

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model"]
