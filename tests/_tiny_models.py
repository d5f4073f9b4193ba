"""Small models with every method, shared by the core tests."""

import tensorflow as tf

import larq_adaptive as lqa


def every_method_model(channels=32, size=8, num_classes=10):
    """AdaBin conv + Maxout, DySign/ReActNet (switchable) conv + DyPReLU, RSign conv + RPReLU."""
    inp = tf.keras.Input((size, size, channels))
    x = lqa.layers.AdaBinConv2D(channels, name="adabin_conv")(inp)
    x = tf.keras.layers.BatchNormalization(name="bn1")(x)
    x = lqa.layers.Maxout(name="maxout")(x)
    x = lqa.layers.PaddedQuantConv2D(
        channels, 3, strides=2, name="dysign_conv", use_bias=False,
        input_quantizer=lqa.quantizers.DySign(reduction=4),
        kernel_quantizer=lqa.quantizers.SwitchableQuantizer(
            lqa.quantizers.ReActNetWeightQuantizer(), active=True),
    )(x)
    x = tf.keras.layers.BatchNormalization(name="bn2")(x)
    x = lqa.layers.DyPReLU(reduction=4, name="dyprelu")(x)
    x = lqa.layers.PaddedQuantConv2D(
        channels, 3, name="rsign_conv", use_bias=False,
        input_quantizer=lqa.quantizers.RSign(),
        kernel_quantizer=lqa.quantizers.ReActNetWeightQuantizer(),
    )(x)
    x = tf.keras.layers.BatchNormalization(name="bn3")(x)
    x = lqa.layers.RPReLU(name="rprelu")(x)
    x = lqa.layers.OptionAShortcut(2 * channels, 2, name="shortcut")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return tf.keras.Model(inp, out)
