"""Keras 3 model definitions. Mirrors backends/torch/models.py block for block.

Layer names are the canonical weight prefixes (the torch module paths, see
backends/base.py); backends/tf/backend.py converts each layer's arrays to and from the
canonical layout by layer type.
"""

from __future__ import annotations

import backends.tf  # noqa: F401  (pins KERAS_BACKEND before keras is imported)
import keras
from keras import layers

from backends.base import BN_EPSILON, BN_MOMENTUM_KERAS
from backends.catalog import ModelRegistry

_registry = ModelRegistry("tf")
register_model = _registry.register
create_model = _registry.create
list_models = _registry.names


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM_KERAS, name=name)


def conv_stage(x, out_channels: int, convs: int, name: str):
    """`convs` × [Conv3×3 (pad 1) + BN + ReLU]; layers <name>.conv1, <name>.bn1, …

    Args:
        x: input tensor (NHWC).
        out_channels: channels of every conv in the stage.
        convs: number of Conv-BN-ReLU units.
        name: the stage's name prefix.

    Returns:
        The stage's output tensor.
    """
    for i in range(1, convs + 1):
        # 3×3, stride 1, "same" pads 1 on every side, exactly like torch's padding=1.
        x = layers.Conv2D(out_channels, 3, padding="same", name=f"{name}.conv{i}")(x)
        x = layers.ReLU()(_bn(f"{name}.bn{i}")(x))
    return x


@register_model
def proposed_cnn(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """The design card's proposed CNN (DESIGN §3); see torch's ProposedCNN.

    Args:
        input_shape: (H, W, C).
        num_classes: output classes.

    Returns:
        A functional keras.Model mapping NHWC float input to logits.
    """
    inputs = keras.Input(input_shape)
    x = layers.MaxPooling2D(2)(conv_stage(inputs, 32, 2, "block1"))
    x = layers.MaxPooling2D(2)(conv_stage(x, 64, 2, "block2"))
    x = layers.MaxPooling2D(2)(conv_stage(x, 128, 2, "block3"))
    x = layers.Dropout(0.5)(conv_stage(x, 256, 1, "block4"))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name="proposed_cnn")
